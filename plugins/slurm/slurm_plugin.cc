#include "slurm_plugin.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace taskhub::plugins::slurm {
namespace {

std::optional<uint64_t> jobIdOf(std::string_view s) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size() || n == 0) return std::nullopt;
    return n;
}

// A line of text for a message: no control characters, at most n bytes.
std::string shortText(std::string s, size_t n = 300) {
    if (s.size() > n) s = s.substr(0, n) + "...";
    for (char& c : s) {
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    return s;
}

bool makeDirs(const std::string& path, mode_t mode, std::string* err) {
    std::string at;
    size_t pos = 1;
    while (pos <= path.size()) {
        const size_t next = path.find('/', pos);
        at = path.substr(0, next);
        if (::mkdir(at.c_str(), next == std::string::npos ? mode : 0755) != 0 && errno != EEXIST) {
            *err = "cannot create " + at + ": " + std::strerror(errno);
            return false;
        }
        if (next == std::string::npos) break;
        pos = next + 1;
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        *err = path + " is not a directory";
        return false;
    }
    return true;
}

} // namespace

SlurmPlugin::SlurmPlugin(sdk::Host host, std::string_view config_json) : Plugin(host), config_(parseConfig(config_json)) {
    if (config_.slurm_conf.empty()) {
        if (const char* c = std::getenv("SLURM_CONF"); c && *c) config_.slurm_conf = c;
    }
}

// output_dir is made when a job first needs it: a daemon whose workflows use no Slurm task
// leaves no trace of the plugin.
void SlurmPlugin::ensureOutputDir() {
    if (output_dir_ready_) return;
    std::string err;
    if (!makeDirs(config_.output_dir, 0755, &err))
        throw std::runtime_error("cannot prepare output_dir of [plugins.slurm]: " + err);
    output_dir_ready_ = true;
}

SlurmPlugin::~SlurmPlugin() {
    if (timer_ != 0) host().cancelTimer(timer_);
    for (auto& [id, r] : running_) {
        host().unwatchFd(r.watch);
        host().cancelTimer(r.timeout);
    }
    for (auto& [token, job] : jobs_) {
        if (job.log_fd >= 0) ::close(job.log_fd);
    }
}

void SlurmPlugin::validate(std::string_view params_json) {
    Params p = parseParams(params_json);
    used_ = true;
    if (!p.partition.empty() && p.partition.find("${") == std::string::npos) {
        std::lock_guard lock(partitions_mu_);
        size_t pos = 0;
        while (pos <= p.partition.size()) { // "a,b": the job may run in either
            const size_t comma = p.partition.find(',', pos);
            partitions_.insert(p.partition.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
    }
}

std::vector<std::string> SlurmPlugin::env() const {
    std::vector<std::string> e = {"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "HOME=/"};
    if (!config_.slurm_conf.empty()) e.push_back("SLURM_CONF=" + config_.slurm_conf);
    return e;
}

std::string SlurmPlugin::program(const char* name) const {
    if (!config_.bin_dir.empty()) return config_.bin_dir + "/" + name;
    for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return std::string("/usr/bin/") + name;
}

void SlurmPlugin::run(const char* name, std::vector<std::string> args, std::function<void(const CommandResult&)> done) {
    runWithInput(name, std::move(args), -1, env(), std::move(done));
}

void SlurmPlugin::runWithInput(const char* name, std::vector<std::string> args, int stdin_fd,
                               std::vector<std::string> child_env, std::function<void(const CommandResult&)> done) {
    std::string err;
    auto child = Child::start(program(name), args, child_env, &err, stdin_fd);
    if (!child) {
        CommandResult r;
        r.failure = "could not be started: " + err;
        // Never inside the caller: it may hold references into jobs_.
        host().addTimer(0, [done = std::move(done), r] { done(r); });
        return;
    }
    const int pidfd = child->pidfd();
    const uint64_t id = ++next_child_;
    auto shared_done = std::make_shared<std::function<void(const CommandResult&)>>(std::move(done));
    const uint64_t timeout = host().addTimer(config_.command_timeout_ms, [this, id, name_s = std::string(name)] {
        auto it = running_.find(id);
        if (it == running_.end()) return;
        it->second.child->markKilled("did not answer within " + std::to_string(config_.command_timeout_ms / 1000) +
                                     "s (command_timeout) and was killed");
        it->second.child->kill();
    });
    running_[id] = Running{std::move(child), timeout, 0};
    running_[id].watch = host().watchFd(pidfd, [this, id, shared_done](int) {
        auto it = running_.find(id);
        if (it == running_.end()) return;
        Running r = std::move(it->second);
        running_.erase(it);
        host().cancelTimer(r.timeout);
        const CommandResult result = r.child->finish();
        (*shared_done)(result);
    });
}

SlurmPlugin::Job* SlurmPlugin::find(uint64_t token) {
    auto it = jobs_.find(token);
    return it == jobs_.end() ? nullptr : &it->second;
}

void SlurmPlugin::finish(Job& job, int outcome, int exit_code, const std::string& message) {
    const uint64_t token = job.token;
    if (job.log_fd >= 0) ::close(job.log_fd);
    // Their content is in the task's log now; output_dir would otherwise grow for ever.
    for (const auto& f : job.copied_files) ::unlink(f.c_str());
    // An array's elements whose copy had begun, however the attempt ends.
    for (auto it = element_offsets_.lower_bound({token, 0}); it != element_offsets_.end() && it->first.first == token;)
        it = element_offsets_.erase(it);
    jobs_.erase(token);
    host().complete(token, static_cast<th_outcome>(outcome), exit_code, message);
}

void SlurmPlugin::lose(Job& job, const std::string& why) { finish(job, TH_OUTCOME_LOST, -1, why); }

SlurmPlugin::Job& SlurmPlugin::track(const sdk::Task& task, const Params& p) {
    Job job;
    job.token = task.token;
    job.array = !p.array.empty();
    job.comment = jobComment(task.run_id, task.task_id, task.attempt);
    job.owner_uid = task.run_as ? task.run_as->uid : ::geteuid();
    if (task.log_fd >= 0) {
        job.log_fd = ::fcntl(task.log_fd, F_DUPFD_CLOEXEC, 3);
        // Written from the event loop, which also empties the pipe: never block on it.
        if (job.log_fd >= 0) ::fcntl(job.log_fd, F_SETFL, ::fcntl(job.log_fd, F_GETFL) | O_NONBLOCK);
    }
    return jobs_[task.token] = std::move(job);
}

void SlurmPlugin::execute(const sdk::Task& task) {
    const Params p = parseParams(task.params_json); // throws: the attempt did not start
    used_ = true;
    ensureOutputDir();
    std::optional<JobOwner> owner;
    if (task.run_as) owner = JobOwner{task.run_as->uid, task.run_as->gid};
    // A `command` becomes a batch script in a memory file, read by sbatch from its standard input:
    // no file of ours that others could see or replace.
    int script_fd = -1;
    if (!p.command.empty()) {
        script_fd = ::memfd_create("taskhub-batch-script", MFD_CLOEXEC);
        const std::string script = batchScript(p);
        if (script_fd < 0 || ::write(script_fd, script.data(), script.size()) != static_cast<ssize_t>(script.size())) {
            if (script_fd >= 0) ::close(script_fd);
            throw std::runtime_error(std::string("cannot write the batch script to a memory file: ") + std::strerror(errno));
        }
    }
    Job& job = track(task, p);
    const uint64_t token = task.token;
    auto args = sbatchArgs(p, jobName(task.workflow, task.task_id), job.comment, config_.output_dir, owner, p.script);
    // sbatch exports its environment to the job: the task's (TASKHUB_* and its env table), PATH
    // and SLURM_CONF, and nothing else of taskhubd's.
    std::vector<std::string> job_env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    if (!config_.slurm_conf.empty()) job_env.push_back("SLURM_CONF=" + config_.slurm_conf);
    for (const auto& e : task.env) job_env.push_back(e);
    runWithInput("sbatch", std::move(args), script_fd, std::move(job_env),
                 [this, token](const CommandResult& r) { submitted(token, r); });
    if (script_fd >= 0) ::close(script_fd); // the child has its own copy
}

void SlurmPlugin::submitted(uint64_t token, const CommandResult& r) {
    Job* job = find(token);
    if (!job) return;
    if (!r.ran && r.failure.find("command_timeout") != std::string::npos) {
        // Killed while it waited for slurmctld: it may have submitted the job all the same. Look
        // for it by its comment rather than risk running it twice.
        job->searching = true;
        job->searched_because = "sbatch " + r.failure;
        arm();
        return;
    }
    if (!r.ran || r.exit_code != 0) {
        finish(*job, TH_OUTCOME_FAILED, -1, "sbatch did not submit the job: " + shortText(r.describe("sbatch")));
        return;
    }
    // --parsable: "<id>" or "<id>;<cluster>".
    std::string line = r.out.substr(0, r.out.find('\n'));
    line = line.substr(0, line.find(';'));
    auto id = jobIdOf(line);
    if (!id) {
        finish(*job, TH_OUTCOME_FAILED, -1, "sbatch answered \"" + shortText(r.out, 120) + "\", not a job id");
        return;
    }
    job->job_id = *id;
    job->output.path = config_.output_dir + "/taskhub-" + std::to_string(*id) + ".out";
    host().reportHandle(token, std::to_string(*id));
    if (job->cancel_requested) scancel(*job);
    if (job->hold_wanted && !job->cancel_requested) scontrol(*job, "hold", &job->held);
    arm();
}

void SlurmPlugin::adopt(const sdk::Task& task, const std::optional<std::string>& handle) {
    const Params p = parseParams(task.params_json);
    used_ = true;
    std::optional<uint64_t> id;
    if (handle) {
        id = jobIdOf(*handle);
        if (!id) throw std::runtime_error("the recorded handle \"" + shortText(*handle, 60) + "\" is not a Slurm job id");
    }
    Job& job = track(task, p);
    if (id) {
        job.job_id = *id;
        job.output.path = config_.output_dir + "/taskhub-" + std::to_string(*id) + ".out";
    } else {
        job.searching = true; // found by its comment at the next poll
        job.searched_because = "its job id was not recorded before taskhubd stopped";
    }
    arm();
}

void SlurmPlugin::arm() {
    if (timer_ != 0 || jobs_.empty()) return;
    // squeue --json costs its client about 0.1 ms of CPU per job it lists: with many jobs the
    // polls come further apart (10 ms per followed job: 1,000 jobs every 10 s), so that following
    // them stays near 1% of a core however many there are.
    const uint64_t interval = std::max<uint64_t>(config_.poll_interval_ms, kPollPerJobMs * jobs_.size());
    timer_ = host().addTimer(interval, [this] {
        timer_ = 0;
        poll();
    });
}

void SlurmPlugin::poll() {
    if (polling_ || jobs_.empty()) return;
    for (auto& [token, job] : jobs_) {
        if (job.cancel_requested && !job.cancel_sent && job.job_id != 0) scancel(job); // a retry
    }
    polling_ = true;
    // One query for every job: 22.05's squeue ignores filters with --json (docs/slurm.md).
    run("squeue", {"--json"}, [this](const CommandResult& r) { polled(r); });
}

void SlurmPlugin::polled(const CommandResult& r) {
    polling_ = false;
    std::string err;
    std::optional<std::vector<JobInfo>> infos;
    if (!r.ran || r.exit_code != 0) {
        err = r.describe("squeue");
    } else {
        infos = parseSqueue(r.out, &err);
    }
    if (!infos) {
        if (err != poll_error_) {
            host().log(TH_LOG_WARN, "cannot ask Slurm about its jobs: " + shortText(err) +
                                        "; the jobs keep their last known state until squeue answers");
        }
        poll_error_ = err;
        arm();
        return;
    }
    if (!poll_error_.empty()) host().log(TH_LOG_INFO, "squeue answers again");
    poll_error_.clear();
    std::vector<uint64_t> tokens;
    for (const auto& [token, job] : jobs_) tokens.push_back(token);
    for (uint64_t token : tokens) {
        if (Job* job = find(token)) follow(*job, *infos);
    }
    arm();
}

void SlurmPlugin::copyOutput(Job& job, Output& out, bool whole, bool* complete) {
    *complete = true;
    if (job.log_fd < 0 || out.path.empty() || out.offset == UINT64_MAX) return;
    const int fd = ::open(out.path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP) { // a symbolic link planted where the output goes: never followed
        host().log(TH_LOG_WARN, out.path + " is a symbolic link, not a regular file of the job's user (uid " +
                                    std::to_string(job.owner_uid) + "); its output is not copied into the task's log");
        out.offset = UINT64_MAX;
        return;
    }
    if (fd < 0) return; // not written yet (or never: a job that failed to start)
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_uid != job.owner_uid && st.st_uid != 0)) {
        host().log(TH_LOG_WARN, out.path + " is not a regular file of the job's user (uid " +
                                    std::to_string(job.owner_uid) + "); its output is not copied into the task's log");
        out.offset = UINT64_MAX;
        ::close(fd);
        return;
    }
    char buf[65536];
    uint64_t budget = whole ? (64u << 20) : (1u << 20);
    while (budget > 0) {
        const ssize_t n = ::pread(fd, buf, std::min<uint64_t>(sizeof buf, budget), static_cast<off_t>(out.offset));
        if (n <= 0) break;
        const ssize_t w = ::write(job.log_fd, buf, static_cast<size_t>(n));
        if (w <= 0) { // the log's pipe is full (or gone): the rest comes next time
            *complete = !(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            break;
        }
        out.offset += static_cast<uint64_t>(w);
        budget -= static_cast<uint64_t>(std::min<uint64_t>(budget, static_cast<uint64_t>(w)));
        if (w < n) {
            *complete = false;
            break;
        }
    }
    if (budget == 0) *complete = false;
    ::close(fd);
}

void SlurmPlugin::follow(Job& job, const std::vector<JobInfo>& infos) {
    if (job.searching) {
        for (const auto& i : infos) {
            if (i.comment != job.comment) continue;
            job.job_id = i.array_job_id != 0 ? i.array_job_id : i.job_id;
            job.array = i.array_job_id != 0;
            job.output.path = config_.output_dir + "/taskhub-" + std::to_string(job.job_id) + ".out";
            job.searching = false;
            host().reportHandle(job.token, std::to_string(job.job_id));
            host().log(TH_LOG_INFO, "found Slurm job " + std::to_string(job.job_id) + " of an adopted attempt by its comment \"" +
                                        job.comment + "\"");
            break;
        }
        if (job.searching) {
            lose(job, "no Slurm job of this attempt was found: " + job.searched_because +
                          ", and squeue shows no job with the comment \"" + job.comment + "\"");
            return;
        }
        if (job.cancel_requested) scancel(job);
    }
    if (job.job_id == 0) return; // sbatch still runs
    const uint64_t id = job.job_id;
    if (!job.array) {
        const JobInfo* info = nullptr;
        for (const auto& i : infos) {
            if (i.job_id == id && i.array_job_id == 0) info = &i;
        }
        if (!info) return missing(job);
        job.misses = 0;
        job.last_state = info->state;
        bool complete = true;
        copyOutput(job, job.output, isFinal(info->state), &complete);
        if (!isFinal(info->state) || !complete) return; // the rest of its output first
        if (job.output.offset != UINT64_MAX && job.log_fd >= 0) job.copied_files.push_back(job.output.path);
        const Verdict v = jobVerdict(id, *info, job.cancel_requested);
        finish(job, v.outcome, v.exit_code, v.message);
        return;
    }
    std::vector<const JobInfo*> records;
    for (const auto& i : infos) {
        if (i.array_job_id == id) records.push_back(&i);
    }
    if (records.empty()) return missing(job);
    job.misses = 0;
    bool all_final = true;
    bool all_copied = true;
    job.last_state = "RUNNING";
    for (const JobInfo* r : records) {
        if (!isFinal(r->state)) {
            all_final = false;
            if (r->state == "PENDING" && !r->array_task_id) job.last_state = "PENDING";
            continue;
        }
        if (!r->array_task_id || job.elements_copied[*r->array_task_id]) continue;
        Output out{config_.output_dir + "/taskhub-" + std::to_string(id) + "_" + std::to_string(*r->array_task_id) + ".out",
                   0};
        auto& progress = element_offsets_[{job.token, *r->array_task_id}];
        if (progress == 0) {
            const std::string header = "--- element " + std::to_string(*r->array_task_id) + " (job " +
                                       std::to_string(r->job_id) + ", " + r->state + ") ---\n";
            if (job.log_fd >= 0 && ::write(job.log_fd, header.data(), header.size()) < 0) {
                all_copied = false;
                continue;
            }
            progress = 1; // header written; file offsets start at 0 below
        }
        out.offset = progress - 1;
        bool complete = true;
        copyOutput(job, out, true, &complete);
        progress = out.offset == UINT64_MAX ? UINT64_MAX : out.offset + 1;
        if (complete) {
            job.elements_copied[*r->array_task_id] = true;
            if (out.offset != UINT64_MAX && job.log_fd >= 0) job.copied_files.push_back(out.path);
        } else {
            all_copied = false;
        }
    }
    if (!all_final || !all_copied) return;
    std::vector<Element> elements;
    for (const JobInfo* r : records) {
        if (r->array_task_id) {
            elements.push_back({*r->array_task_id, r->job_id, *r});
        } else {
            for (uint64_t index : arrayIndices(r->array_task_string)) elements.push_back({index, r->job_id, *r});
        }
    }
    std::sort(elements.begin(), elements.end(), [](const Element& a, const Element& b) { return a.index < b.index; });
    const Verdict v = arrayVerdict(id, elements, job.cancel_requested);
    finish(job, v.outcome, v.exit_code, v.message);
}

// squeue no longer shows the job: once more to be sure, then accounting, then it is lost.
void SlurmPlugin::missing(Job& job) {
    if (++job.misses < 2) return;
    if (config_.sacct && !job.asked_sacct) {
        askSacct(job.token);
        return;
    }
    if (job.asked_sacct) return; // its answer decides
    lose(job, "Slurm job " + std::to_string(job.job_id) +
                  " is no longer known to Slurm (squeue does not show it, and accounting is not asked: sacct = "
                  "\"never\")");
}

void SlurmPlugin::askSacct(uint64_t token) {
    Job* job = find(token);
    if (!job) return;
    job->asked_sacct = true;
    const std::string id = std::to_string(job->job_id);
    run("sacct", {"-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", id}, [this, token, id](const CommandResult& r) {
        Job* j = find(token);
        if (!j) return;
        if (!r.ran || r.exit_code != 0) {
            lose(*j, "Slurm job " + id + " is no longer known to Slurm (squeue does not show it, and accounting is "
                                         "not available: " + shortText(r.describe("sacct")) + ")");
            return;
        }
        const auto records = parseSacct(r.out);
        if (!j->array) {
            auto it = records.find(id);
            if (it == records.end() || !isFinal(it->second.state)) {
                lose(*j, "Slurm job " + id + " is no longer known to Slurm (neither squeue nor sacct shows it)");
                return;
            }
            bool complete = true;
            copyOutput(*j, j->output, true, &complete);
            const Verdict v = jobVerdict(j->job_id, it->second, j->cancel_requested);
            finish(*j, v.outcome, v.exit_code, v.message);
            return;
        }
        std::vector<Element> elements;
        for (const auto& [key, info] : records) {
            if (key.rfind(id + "_", 0) != 0) continue;
            const std::string index = key.substr(id.size() + 1);
            if (auto n = jobIdOf(index); n || index == "0") elements.push_back({n.value_or(0), info.job_id, info});
        }
        if (elements.empty()) {
            lose(*j, "Slurm array job " + id + " is no longer known to Slurm (neither squeue nor sacct shows it)");
            return;
        }
        const Verdict v = arrayVerdict(j->job_id, elements, j->cancel_requested);
        finish(*j, v.outcome, v.exit_code, v.message);
    });
}

void SlurmPlugin::scancel(Job& job) {
    if (job.cancel_sent || job.job_id == 0) return;
    job.cancel_sent = true;
    const uint64_t token = job.token;
    const std::string id = std::to_string(job.job_id);
    run("scancel", {id}, [this, token, id](const CommandResult& r) {
        if (r.ran && r.exit_code == 0) return; // the job ends as CANCELLED at a later poll
        host().log(TH_LOG_WARN, "cannot cancel Slurm job " + id + ": " + shortText(r.describe("scancel")) +
                                    "; trying again at the next poll");
        if (Job* j = find(token)) j->cancel_sent = false;
    });
}

void SlurmPlugin::cancel(uint64_t token) {
    Job* job = find(token);
    if (!job) return;
    job->cancel_requested = true;
    scancel(*job); // without a job id yet: once sbatch (or the search) has one
}

void SlurmPlugin::suspend(uint64_t token) {
    Job* job = find(token);
    if (!job) return;
    if (job->job_id == 0) throw std::runtime_error("the attempt's Slurm job is not submitted yet; it cannot be held");
    const std::string id = std::to_string(job->job_id);
    // A job that waits is held; one that runs is suspended (root or a Slurm operator only).
    const bool hold = job->last_state.empty() || job->last_state == "PENDING";
    (hold ? job->held : job->suspended) = true;
    run("scontrol", {hold ? "hold" : "suspend", id}, [this, token, id, hold](const CommandResult& r) {
        if (r.ran && r.exit_code == 0) return;
        host().log(TH_LOG_WARN, std::string(hold ? "cannot hold Slurm job " : "cannot suspend Slurm job ") + id + ": " +
                                    shortText(r.describe("scontrol")) + "; it goes on " + (hold ? "waiting" : "running"));
        if (Job* j = find(token)) (hold ? j->held : j->suspended) = false;
    });
}

// `pause RUN` (without --freeze): a job still waiting in the queue is held; one that runs goes on.
void SlurmPlugin::hold(uint64_t token) {
    Job* job = find(token);
    if (!job) return;
    if (job->job_id == 0) {
        job->hold_wanted = true; // once sbatch has answered
        return;
    }
    if (job->last_state.empty() || job->last_state == "PENDING") scontrol(*job, "hold", &job->held);
}

void SlurmPlugin::release(uint64_t token) {
    Job* job = find(token);
    if (!job) return;
    job->hold_wanted = false;
    if (job->held) {
        job->held = false;
        scontrol(*job, "release", nullptr);
    }
}

// scontrol VERB <id>; *flag (when given) is set now and cleared again if Slurm refuses.
void SlurmPlugin::scontrol(Job& job, const char* verb, bool* flag) {
    if (flag) *flag = true;
    const uint64_t token = job.token;
    const std::string id = std::to_string(job.job_id);
    const bool holding = std::string(verb) == "hold";
    run("scontrol", {verb, id}, [this, token, id, verb = std::string(verb), holding](const CommandResult& r) {
        if (r.ran && r.exit_code == 0) return;
        host().log(TH_LOG_WARN, "cannot " + verb + " Slurm job " + id + ": " + shortText(r.describe("scontrol")) +
                                    (holding ? "; it goes on waiting and may start while the run is paused" : ""));
        if (holding) {
            if (Job* j = find(token)) j->held = false;
        }
    });
}

void SlurmPlugin::resume(uint64_t token) {
    Job* job = find(token);
    if (!job || job->job_id == 0) return;
    const std::string id = std::to_string(job->job_id);
    for (auto [flag, verb] : {std::pair{&job->held, "release"}, std::pair{&job->suspended, "resume"}}) {
        if (!*flag) continue;
        *flag = false;
        run("scontrol", {verb, id}, [this, id, verb = std::string(verb)](const CommandResult& r) {
            if (r.ran && r.exit_code == 0) return;
            host().log(TH_LOG_WARN, "cannot " + verb + " Slurm job " + id + ": " + shortText(r.describe("scontrol")));
        });
    }
}

sdk::Health SlurmPlugin::health() {
    // Nothing to check (and no process to start every health_interval) while no loaded workflow
    // has a Slurm task: a host without Slurm sees the plugin healthy and idle.
    if (!used_) return {TH_HEALTH_OK, "no loaded workflow has a slurm task; Slurm is not checked"};
    const auto e = env();
    const std::string scontrol = program("scontrol");
    CommandResult ping = runAndWait(scontrol, {"ping"}, e, config_.command_timeout_ms);
    const std::string said = shortText(ping.out.substr(0, ping.out.find('\n')), 200);
    if (said.find(" is UP") == std::string::npos) {
        return {TH_HEALTH_UNHEALTHY, "slurmctld is not reachable: " +
                                         (said.empty() ? shortText(ping.describe("scontrol ping")) : said)};
    }
    CommandResult parts = runAndWait(scontrol, {"show", "partition", "-o"}, e, config_.command_timeout_ms);
    if (!parts.ran || parts.exit_code != 0)
        return {TH_HEALTH_DEGRADED, "slurmctld is UP, but its partitions could not be read: " +
                                        shortText(parts.describe("scontrol show partition"))};
    std::set<std::string> wanted;
    {
        std::lock_guard lock(partitions_mu_);
        wanted = partitions_;
    }
    // "PartitionName=debug ... Default=YES ... State=UP ..." per line.
    std::map<std::string, std::string> state;
    std::string default_partition;
    size_t pos = 0;
    while (pos < parts.out.size()) {
        size_t end = parts.out.find('\n', pos);
        if (end == std::string::npos) end = parts.out.size();
        const std::string line = parts.out.substr(pos, end - pos);
        pos = end + 1;
        auto value = [&](const std::string& key) {
            const size_t at = line.find(key + "=");
            if (at == std::string::npos || (at > 0 && line[at - 1] != ' ')) return std::string();
            const size_t from = at + key.size() + 1;
            return line.substr(from, line.find(' ', from) - from);
        };
        const std::string name = value("PartitionName");
        if (name.empty()) continue;
        state[name] = value("State");
        if (value("Default") == "YES") default_partition = name;
    }
    if (wanted.empty() && !default_partition.empty()) wanted.insert(default_partition);
    sdk::Health h{TH_HEALTH_OK, "slurmctld is UP"};
    std::string list;
    for (const auto& name : wanted) {
        auto it = state.find(name);
        const std::string s = it == state.end() ? "missing" : it->second;
        list += (list.empty() ? "" : ", ") + name + " " + s;
        if (it == state.end()) {
            h.state = TH_HEALTH_UNHEALTHY;
            h.message = "partition " + name + " does not exist";
            return h;
        }
        if (s == "DOWN" || s == "INACTIVE") {
            h.state = TH_HEALTH_UNHEALTHY;
            h.message = "partition " + name + " is " + s + ": it runs no jobs";
            return h;
        }
        if (s == "DRAIN" && h.state == TH_HEALTH_OK) {
            h.state = TH_HEALTH_DEGRADED;
            h.message = "partition " + name + " is DRAIN: it takes no new jobs";
        }
    }
    if (h.state == TH_HEALTH_OK && !list.empty()) h.message += "; partitions: " + list;
    return h;
}

} // namespace taskhub::plugins::slurm

TASKHUB_PLUGIN(taskhub::plugins::slurm::SlurmPlugin, "slurm", TASKHUB_PLUGIN_VERSION,
               "Runs each task as a Slurm batch job (sbatch), follows it with squeue, re-attaches after a restart",
               TH_CAP_CANCEL | TH_CAP_HEALTH_CHECK | TH_CAP_SUSPEND | TH_CAP_RUN_AS | TH_CAP_DURABLE_START | TH_CAP_ADOPT |
                   TH_CAP_HOLD,
               TH_THREADS_SERIAL)
