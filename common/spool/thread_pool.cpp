#include "common/spool/thread_pool.hpp"

#include <algorithm>
#include <memory>
#include <system_error>
#include <utility>

namespace pbx::spool {

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;  // no thread is made from here on: threads_ stays as it is
    }
    cv_.notify_all();
    // A thread leaves only when no task is left (tasks posted meanwhile by
    // running tasks included).
    for (std::thread& t : threads_) t.join();
    // No thread ever ran (none could be made): the tasks run here.
    while (!tasks_.empty()) {
        auto task = std::move(tasks_.front());
        tasks_.pop_front();
        task();
    }
}

bool ThreadPool::add_thread_locked() {
    if (stop_ || threads_.size() >= max_threads_) return false;
    try {
        threads_.emplace_back([this] { worker(); });
    } catch (const std::system_error&) {
        return false;
    }
    return true;
}

Status ThreadPool::start(size_t n) {
    std::lock_guard lock(mu_);
    while (threads_.size() < std::min(n, max_threads_))
        if (!add_thread_locked()) return fail("cannot start a thread");
    return {};
}

void ThreadPool::post(std::function<void()> task) {
    {
        std::lock_guard lock(mu_);
        tasks_.push_back(std::move(task));
        if (tasks_.size() > idle_) (void)add_thread_locked();  // the threads there are will do
    }
    cv_.notify_one();
}

bool ThreadPool::post_if_idle(std::function<void()> task) {
    {
        std::lock_guard lock(mu_);
        if (idle_ <= tasks_.size()) return false;
        tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
}

void ThreadPool::worker() {
    std::unique_lock lock(mu_);
    for (;;) {
        ++idle_;
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        --idle_;
        if (tasks_.empty()) return;  // stopping, and nothing left to do
        auto task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        task();
        lock.lock();
    }
}

void ThreadPool::run_all(std::vector<std::function<void()>>& fns) {
    if (fns.size() < 2) {
        for (auto& f : fns) f();
        return;
    }
    // Shared with the helpers posted to the pool: one that starts after
    // every function has been taken (and `fns` may be gone) only looks at
    // `next` and `count` and returns.
    struct Shared {
        std::mutex mu;
        std::condition_variable cv;
        std::vector<std::function<void()>>* fns = nullptr;
        size_t count = 0;
        size_t next = 0;
        size_t done = 0;
    };
    auto sh = std::make_shared<Shared>();
    sh->fns = &fns;
    sh->count = fns.size();
    auto take_and_run = [sh] {
        for (;;) {
            std::function<void()>* f = nullptr;
            {
                std::lock_guard lock(sh->mu);
                if (sh->next >= sh->count) return;
                f = &(*sh->fns)[sh->next++];
            }
            (*f)();
            {
                std::lock_guard lock(sh->mu);
                ++sh->done;
            }
            sh->cv.notify_all();
        }
    };
    for (size_t i = 0; i + 1 < fns.size(); ++i) post(take_and_run);
    take_and_run();
    std::unique_lock lock(sh->mu);
    sh->cv.wait(lock, [&] { return sh->done == sh->count; });
}

}  // namespace pbx::spool
