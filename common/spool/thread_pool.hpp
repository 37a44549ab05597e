// A small pool of threads for blocking calls run side by side: the fsyncs of
// the queue-manager's group commit (queue-manager/commit.hpp) and of a
// Maildir batch in local-delivery's workers (mailbox::maildir_deliver_batch).
// The one mechanism for both: a disk serves fsyncs that wait together with
// one flush, and ext4 one journal commit, so both run theirs at once.
//
// No thread is made per call: start() makes the first ones, post() makes
// another when more tasks wait than threads are idle (up to max_threads), and
// threads live as long as the pool. The destructor runs every task posted
// (tasks posted by running tasks too), then joins the threads.
//
// Made after fork(), never before: a pool's threads do not exist in a
// child (local-delivery's workers make theirs in serve_worker).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/result.hpp"

namespace pbx::spool {

class ThreadPool {
  public:
    explicit ThreadPool(size_t max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    // Makes `n` threads now (at most max_threads in all); fails when one
    // cannot be made (those made stay).
    Status start(size_t n);

    // Queues `task` for a thread, making one when more tasks wait than
    // threads are idle and the pool is below max_threads. A task must not
    // throw. With no thread at all (none could be made), the task waits for
    // the next thread made, or for the destructor.
    void post(std::function<void()> task);

    // Queues `task` only when a thread is idle for it now (it starts at
    // once, beside the caller); false otherwise: the caller runs it itself.
    bool post_if_idle(std::function<void()> task);

    // Runs every function side by side: the calling thread runs them too,
    // taking the next one no thread has taken, so that all of them run even
    // when no thread can be made; returns when every one has returned. Tasks
    // must not throw.
    void run_all(std::vector<std::function<void()>>& fns);

    // For logs and tests.
    size_t threads() const {
        std::lock_guard lock(mu_);
        return threads_.size();
    }
    size_t max_threads() const { return max_threads_; }

  private:
    void worker();
    // With mu_ held: a thread more, unless there are max_threads_ (false
    // when one could not be made).
    bool add_thread_locked();

    const size_t max_threads_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> tasks_;  // guarded by mu_
    size_t idle_ = 0;                          // guarded by mu_
    bool stop_ = false;                        // guarded by mu_
    std::vector<std::thread> threads_;         // guarded by mu_
};

}  // namespace pbx::spool
