// spool::ThreadPool (common/spool/thread_pool.hpp), the one pool of threads
// for fsyncs side by side (the queue-manager's commit, Maildir batches):
// every task runs exactly once, run_all returns only when every function has
// returned and runs them all even with no thread, tasks run side by side,
// post_if_idle never queues behind others, and the destructor finishes
// every task posted (also those posted by tasks). No timing: rendezvous
// between tasks, never sleeps.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/spool/thread_pool.hpp"

using pbx::spool::ThreadPool;

namespace {

// Opens when `n` parties have arrived; each waits for the others.
class Rendezvous {
  public:
    explicit Rendezvous(size_t n) : left_(n) {}
    void arrive_and_wait() {
        std::unique_lock lock(mu_);
        if (--left_ == 0) cv_.notify_all();
        cv_.wait(lock, [this] { return left_ == 0; });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    size_t left_;
};

}  // namespace

TEST_CASE("thread pool: run_all runs every function once, side by side", "[spool][pool]") {
    ThreadPool pool(8);
    REQUIRE(pool.start(2).ok());
    CHECK(pool.threads() == 2);
    SECTION("functions that wait for each other: only side by side can they end") {
        constexpr size_t kN = 6;
        Rendezvous all(kN);
        std::vector<int> ran(kN, 0);
        std::vector<std::function<void()>> fns;
        for (size_t i = 0; i < kN; ++i)
            fns.emplace_back([&, i] {
                all.arrive_and_wait();
                ++ran[i];
            });
        pool.run_all(fns);  // returns only when every one returned
        CHECK(ran == std::vector<int>(kN, 1));
        CHECK(pool.threads() >= kN - 1);  // made as they were needed
        CHECK(pool.threads() <= pool.max_threads());
    }
    SECTION("many small calls, again and again: every function exactly once") {
        std::atomic<int> sum{0};
        for (int round = 0; round < 50; ++round) {
            std::vector<std::function<void()>> fns;
            for (int i = 1; i <= 10; ++i) fns.emplace_back([&sum, i] { sum += i; });
            pool.run_all(fns);
            CHECK(sum.load() == 55 * (round + 1));
        }
        CHECK(pool.threads() <= pool.max_threads());
    }
    SECTION("zero and one function: on the calling thread") {
        std::vector<std::function<void()>> none;
        pool.run_all(none);
        int n = 0;
        std::vector<std::function<void()>> one{[&] { ++n; }};
        pool.run_all(one);
        CHECK(n == 1);
    }
}

TEST_CASE("thread pool: with no thread, run_all runs everything on the caller", "[spool][pool]") {
    // max 1 and that thread blocked: nothing of run_all can go to a thread.
    ThreadPool pool(1);
    std::mutex mu;
    std::condition_variable cv;
    bool started = false, release = false;
    pool.post([&] {
        std::unique_lock lock(mu);
        started = true;
        cv.notify_all();
        cv.wait(lock, [&] { return release; });
    });
    {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return started; });
    }
    int n = 0;
    std::vector<std::function<void()>> fns(5, [&] { ++n; });  // one thread: no race on n
    pool.run_all(fns);
    CHECK(n == 5);
    CHECK(pool.threads() == 1);
    {
        std::lock_guard lock(mu);
        release = true;
    }
    cv.notify_all();
}

TEST_CASE("thread pool: post_if_idle only when a thread is free for it", "[spool][pool]") {
    ThreadPool pool(1);
    CHECK_FALSE(pool.post_if_idle([] {}));  // no thread yet
    REQUIRE(pool.start(1).ok());
    // The one thread busy: no room.
    Rendezvous busy(2), done(2);
    pool.post([&] {
        busy.arrive_and_wait();
        done.arrive_and_wait();
    });
    busy.arrive_and_wait();
    CHECK_FALSE(pool.post_if_idle([] {}));
    done.arrive_and_wait();
    // Once the thread is back waiting (no timing: yield until it is), a task
    // handed over runs on it.
    std::atomic<bool> ran{false};
    while (!pool.post_if_idle([&] { ran = true; })) std::this_thread::yield();
    while (!ran.load()) std::this_thread::yield();
    CHECK(ran.load());
}

TEST_CASE("thread pool: the destructor runs every task posted, also those tasks post",
          "[spool][pool]") {
    std::atomic<int> count{0};
    {
        ThreadPool pool(3);
        REQUIRE(pool.start(1).ok());
        for (int i = 0; i < 20; ++i)
            pool.post([&pool, &count] {
                ++count;
                pool.post([&count] { ++count; });
            });
    }
    CHECK(count.load() == 40);
}
