// raw_dag: the baseline the engine-overhead benchmark is measured against. Executes a DAG of
// no-op tasks on a plain thread pool (one mutex-protected FIFO of std::function jobs, THREADS
// workers) with an atomic count of unfinished dependencies per task: a job that finishes a task
// decrements the counters of its successors and submits those that reach zero. No store, no
// events, no plugin calls: what scheduling the same DAG costs with nothing around it, measured in
// the same run as the daemon.
//
//   raw_dag [--threads T] [--reps R] FILE
//
// FILE (written by bench_engine_overhead.py): the first line is the number of tasks N; line
// i + 2 lists the indices of task i's dependencies, separated by spaces (empty: a root). Prints
// one JSON line: the median, minimum and maximum nanoseconds per task over R executions (each
// from queuing the roots to the last task's end), and the time to build the graph once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "raw_dag: %s\nusage: raw_dag [--threads T] [--reps R] FILE\n", why);
    std::exit(2);
}

long positive(const char* flag, const char* text) {
    char* end = nullptr;
    long v = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || v <= 0) {
        std::fprintf(stderr, "raw_dag: %s needs a positive integer, found '%s'\n", flag, text);
        std::exit(2);
    }
    return v;
}

// The DAG in compressed form: successors of task i are succ[first[i] .. first[i + 1]).
struct Dag {
    uint32_t n = 0;
    std::vector<uint32_t> first;
    std::vector<uint32_t> succ;
    std::vector<uint32_t> indegree;
};

Dag readDag(const char* path) {
    std::ifstream in(path);
    if (!in) usage((std::string("cannot open ") + path).c_str());
    std::string line;
    if (!std::getline(in, line)) usage("empty DAG file");
    Dag d;
    d.n = static_cast<uint32_t>(std::stoul(line));
    std::vector<std::pair<uint32_t, uint32_t>> edges; // (dependency, task)
    for (uint32_t i = 0; i < d.n; ++i) {
        if (!std::getline(in, line)) usage("DAG file has fewer lines than tasks");
        std::istringstream deps(line);
        unsigned long dep = 0;
        while (deps >> dep) {
            if (dep >= i) usage("a dependency must name an earlier task");
            edges.emplace_back(static_cast<uint32_t>(dep), i);
        }
    }
    d.first.assign(d.n + 1, 0);
    d.indegree.assign(d.n, 0);
    for (auto [from, to] : edges) {
        ++d.first[from + 1];
        ++d.indegree[to];
    }
    for (uint32_t i = 0; i < d.n; ++i) d.first[i + 1] += d.first[i];
    d.succ.resize(edges.size());
    std::vector<uint32_t> fill(d.first.begin(), d.first.end() - 1);
    for (auto [from, to] : edges) d.succ[fill[from]++] = to;
    return d;
}

// A plain thread pool: one mutex-protected FIFO of std::function jobs and `threads` workers,
// as a program without a scheduler of its own would write it.
class ThreadPool {
public:
    explicit ThreadPool(unsigned threads) {
        for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
    }
    ~ThreadPool() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& w : workers_) w.join();
    }
    void submit(std::function<void()> job) {
        {
            std::lock_guard lock(mu_);
            jobs_.push_back(std::move(job));
        }
        cv_.notify_one();
    }

private:
    void work() {
        std::unique_lock lock(mu_);
        for (;;) {
            cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            auto job = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            job();
            lock.lock();
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

// One execution of the DAG on a fresh pool of `threads` workers; returns the seconds from
// submitting the roots to the end of the last task.
double execute(const Dag& d, unsigned threads) {
    std::vector<std::atomic<uint32_t>> pending(d.n);
    for (uint32_t i = 0; i < d.n; ++i) pending[i].store(d.indegree[i], std::memory_order_relaxed);
    std::atomic<uint32_t> done{0};
    std::mutex end_mu;
    std::condition_variable end_cv;
    std::function<void(uint32_t)> run;
    ThreadPool pool(threads); // declared after `run`: joined before `run` goes

    // Runs task t (a no-op, the noop plugin's work), then submits each successor whose last
    // dependency this was.
    run = [&](uint32_t t) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        for (uint32_t k = d.first[t]; k < d.first[t + 1]; ++k) {
            uint32_t s = d.succ[k];
            if (pending[s].fetch_sub(1, std::memory_order_acq_rel) == 1) pool.submit([&run, s] { run(s); });
        }
        if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == d.n) {
            std::lock_guard lock(end_mu);
            end_cv.notify_all();
        }
    };

    auto t0 = std::chrono::steady_clock::now();
    for (uint32_t i = 0; i < d.n; ++i)
        if (d.indegree[i] == 0) pool.submit([&run, i] { run(i); });
    {
        std::unique_lock lock(end_mu);
        end_cv.wait(lock, [&] { return done.load(std::memory_order_acquire) == d.n; });
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
    unsigned threads = 2;
    long reps = 5;
    const char* file = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 < argc && a == "--threads") threads = static_cast<unsigned>(positive("--threads", argv[++i]));
        else if (i + 1 < argc && a == "--reps") reps = positive("--reps", argv[++i]);
        else if (a.rfind("--", 0) == 0 || file) usage(("unexpected argument '" + a + "'").c_str());
        else file = argv[i];
    }
    if (!file) usage("no DAG FILE given");

    auto t0 = std::chrono::steady_clock::now();
    Dag d = readDag(file);
    double load = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (d.n == 0) usage("the DAG has no tasks");

    std::vector<double> ns;
    for (long r = 0; r < reps; ++r) ns.push_back(execute(d, threads) * 1e9 / d.n);
    std::sort(ns.begin(), ns.end());
    std::printf("{\"tasks\": %u, \"edges\": %zu, \"threads\": %u, \"reps\": %ld, "
                "\"ns_per_task\": %.1f, \"ns_per_task_min\": %.1f, \"ns_per_task_max\": %.1f, "
                "\"read_seconds\": %.6f}\n",
                d.n, d.succ.size(), threads, reps, ns[ns.size() / 2], ns.front(), ns.back(), load);
    return 0;
}
