#include "notify/notifier.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>

#include "common/time_util.h"
#include "notify/deliver.h"
#include "notify/webhook.h"
#include "store/store.h"

namespace taskhub::notify {

namespace asio = boost::asio;
using model::NotifyEvent;
using model::NotifyKind;
using model::NotifyState;

namespace {

constexpr int64_t kMaxRetryDelayMs = 3'600'000;

// Where a notification goes: its destination (the command, the addresses, the URL).
const std::string& targetValue(const store::NotificationRecord& rec) { return rec.destination; }

std::vector<std::string> addresses(const std::string& value) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        std::string a = value.substr(start, comma - start);
        a.erase(0, a.find_first_not_of(' '));
        if (auto end = a.find_last_not_of(' '); end != std::string::npos) a.erase(end + 1);
        if (!a.empty()) out.push_back(a);
        start = comma + 1;
    }
    return out;
}

std::optional<std::string> readTail(const std::string& path, size_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    in.seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(std::max<std::streamoff>(0, in.tellg()));
    const size_t from = size > max_bytes ? size - max_bytes : 0;
    in.seekg(static_cast<std::streamoff>(from));
    std::string out(size - from, '\0');
    in.read(out.data(), static_cast<std::streamsize>(out.size()));
    out.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
    // A cut first line is dropped, so that the tail starts at a line.
    if (from > 0) {
        if (auto nl = out.find('\n'); nl != std::string::npos) out.erase(0, nl + 1);
    }
    return out;
}

} // namespace

Notifier::Notifier(asio::io_context& io, store::Store& store, Options options, WorkflowLookup lookup)
    : io_(io), store_(store), opts_(std::move(options)), lookup_(std::move(lookup)), timer_(io),
      alive_(std::make_shared<bool>(true)) {
    char host[HOST_NAME_MAX + 1] = {};
    hostname_ = ::gethostname(host, sizeof host - 1) == 0 && host[0] ? host : "localhost";
    stats_.mbox_path = (opts_.state_dir / "mail" / "undelivered.mbox").string();
}

Notifier::~Notifier() {
    *alive_ = false;
    stopping_ = true;
    {
        std::lock_guard lock(mu_);
        quit_ = true;
        jobs_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void Notifier::workerLoop() {
    pthread_setname_np(pthread_self(), "taskhubd-notify"); // as top -H and /proc show it
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mu_);
            ++idle_;
            cv_.wait(lock, [this] { return quit_ || !jobs_.empty(); });
            --idle_;
            if (quit_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

void Notifier::submit(std::function<void()> job) {
    bool start_thread;
    {
        std::lock_guard lock(mu_);
        jobs_.push_back(std::move(job));
        // One more thread when the queued jobs outnumber the threads waiting for them.
        start_thread = jobs_.size() > idle_ && threads_.size() < static_cast<size_t>(kDeliveryThreads);
    }
    if (start_thread) threads_.emplace_back([this] { workerLoop(); });
    cv_.notify_one();
}

std::string Notifier::displayTarget(const config::NotifyTarget& t) {
    if (t.kind == NotifyKind::Webhook) return "webhook: " + redactWebhookUrl(t.value);
    return t.describe();
}

bool Notifier::sendmailPresent() const { return isExecutable(opts_.settings.sendmail); }

std::vector<config::NotifyTarget> Notifier::targetsOf(const std::string& workflow) const {
    auto wf = lookup_ ? lookup_(workflow) : nullptr;
    if (wf && wf->notify_set) return wf->notify;
    return opts_.defaults;
}

std::string Notifier::runAsOf(const std::string& workflow) const {
    auto wf = lookup_ ? lookup_(workflow) : nullptr;
    if (wf && !wf->run_as.empty()) return wf->run_as;
    return opts_.default_run_as;
}

void Notifier::start(const std::vector<std::shared_ptr<const config::Workflow>>& workflows) {
    for (auto& [wf, state] : store_.lastOutcomes()) last_outcome_[wf] = state;
    auto counts = store_.notificationCounts();
    stats_.total_sent = counts[static_cast<size_t>(NotifyState::Sent)];
    stats_.total_failed = counts[static_cast<size_t>(NotifyState::Failed)];
    stats_.total_dropped = counts[static_cast<size_t>(NotifyState::Dropped)];
    if (sendmailPresent()) return;
    auto hasMail = [](const std::vector<config::NotifyTarget>& ts) {
        return std::any_of(ts.begin(), ts.end(), [](const auto& t) { return t.kind == NotifyKind::Mail; });
    };
    bool mail = hasMail(opts_.defaults);
    for (const auto& wf : workflows) mail = mail || (wf && hasMail(wf->notify));
    stats_.mail_to_mbox = mail;
    if (mail) {
        spdlog::warn("NOTIFY_NO_MTA {} is not installed (or not executable): mail notifications are written to {} "
                     "instead of being sent; install an MTA (e.g. apt install postfix, or msmtp-mta) or set "
                     "[notifications] sendmail in taskhub.toml",
                     opts_.settings.sendmail, stats_.mbox_path);
    }
}

void Notifier::resumeDelivery() {
    size_t loaded = 0;
    for (auto& rec : store_.pendingNotifications(opts_.settings.max_pending)) {
        const std::string id = rec.id;
        if (items_.emplace(id, Item{std::move(rec), false, true}).second) ++loaded;
    }
    for (auto& [id, item] : items_) item.durable = true; // committed before this call (recovery's commit)
    if (loaded > 0) spdlog::info("NOTIFY_RESUMED {} pending notification(s) from before the restart", loaded);
    schedule();
}

Facts Notifier::runFacts(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) const {
    Facts f;
    f.run_id = run.id;
    f.workflow = run.workflow;
    f.state = model::nameString(run.state);
    f.trigger = model::nameString(run.trigger);
    f.message = cutUtf8(run.message, kMaxMessageBytes);
    f.scheduled_ms = run.scheduled_ms;
    f.started_ms = run.started_ms;
    f.ended_ms = run.ended_ms;
    for (const auto* t : tasks) {
        if (t->state != model::TaskState::Failed) continue;
        ++f.failed_count;
        if (f.failed.size() >= kMaxFailedTasks) continue;
        FailedTask ft;
        ft.id = t->task_id;
        ft.message = cutUtf8(t->message, kMaxMessageBytes);
        if (t->attempt > 0 && t->kind == model::TaskKind::Plugin) {
            ft.log = (opts_.log_dir / run.id / (t->task_id + "." + std::to_string(t->attempt) + ".log")).string();
        }
        f.failed.push_back(std::move(ft));
    }
    return f;
}

void Notifier::runEnding(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) {
    if (!run.parent_run.empty()) return; // its top-level run speaks for it
    std::optional<NotifyEvent> outcome;
    bool recovery = false;
    if (run.state == model::RunState::Failed) {
        outcome = NotifyEvent::Failure;
        last_outcome_[run.workflow] = run.state;
    } else if (run.state == model::RunState::Succeeded) {
        outcome = NotifyEvent::Success;
        auto it = last_outcome_.find(run.workflow);
        recovery = it != last_outcome_.end() && it->second == model::RunState::Failed;
        last_outcome_[run.workflow] = run.state;
    }
    const bool lost = run.lost > 0 && lost_sent_.insert(run.id).second;
    if (!outcome && !lost) return;
    const auto targets = targetsOf(run.workflow);
    if (targets.empty()) return;
    const Facts facts = runFacts(run, tasks);
    const std::string run_as = runAsOf(run.workflow);
    for (const auto& t : targets) {
        if (outcome == NotifyEvent::Failure && t.wants(NotifyEvent::Failure)) {
            record(NotifyEvent::Failure, facts, t, run_as);
        } else if (outcome == NotifyEvent::Success) {
            if (recovery && t.wants(NotifyEvent::Recovery)) record(NotifyEvent::Recovery, facts, t, run_as);
            else if (t.wants(NotifyEvent::Success)) record(NotifyEvent::Success, facts, t, run_as);
        }
        if (lost && t.wants(NotifyEvent::Lost)) record(NotifyEvent::Lost, facts, t, run_as);
    }
    afterRecord();
}

void Notifier::attemptLost(const store::RunRecord& run, const store::TaskRecord& task) {
    if (!run.parent_run.empty() || !lost_sent_.insert(run.id).second) return;
    const auto targets = targetsOf(run.workflow);
    if (targets.empty()) return;
    Facts facts = runFacts(run, {});
    facts.failed_count = 1;
    facts.failed.push_back({task.task_id, cutUtf8(task.message, kMaxMessageBytes), ""});
    const std::string run_as = runAsOf(run.workflow);
    for (const auto& t : targets) {
        if (t.wants(NotifyEvent::Lost)) record(NotifyEvent::Lost, facts, t, run_as);
    }
    afterRecord();
}

void Notifier::raise(NotifyEvent event, const DeadlineFacts& d) {
    const auto targets = targetsOf(d.workflow);
    if (targets.empty()) return;
    Facts facts;
    facts.run_id = d.firing_id;
    facts.workflow = d.workflow;
    facts.state = d.run_state ? model::nameString(*d.run_state) : "";
    facts.scheduled_ms = d.scheduled_ms;
    facts.deadline_ms = d.deadline_ms;
    facts.message = "no successful run by the deadline " + formatIsoMillis(d.deadline_ms);
    const std::string run_as = runAsOf(d.workflow);
    for (const auto& t : targets) {
        if (t.wants(event)) record(event, facts, t, run_as);
    }
    afterRecord();
}

void Notifier::record(NotifyEvent event, const Facts& base, const config::NotifyTarget& target,
                      const std::string& run_as) {
    store::NotificationRecord rec;
    rec.target = displayTarget(target);
    rec.destination = target.value;
    // A run's outcome is keyed by when it ended too: a run retried (`taskhubctl retry`) that ends
    // again is a new outcome. Lost and deadline_missed happen once per run or firing.
    std::string key = target.describe();
    if (base.ended_ms && (event == NotifyEvent::Failure || event == NotifyEvent::Success ||
                          event == NotifyEvent::Recovery)) {
        key += "|" + std::to_string(*base.ended_ms);
    }
    rec.id = notificationId(base.run_id, event, key);
    if (items_.count(rec.id)) return;
    Facts facts = base;
    facts.event = event;
    facts.notification_id = rec.id;
    rec.run_id = base.run_id;
    rec.workflow = base.workflow;
    rec.event = event;
    rec.kind = target.kind;
    rec.created_ms = nowMillis();
    rec.next_attempt_ms = rec.created_ms;
    rec.payload = factsJson(facts);
    rec.run_as = target.kind == NotifyKind::Command ? run_as : "";
    auto& per = stats_.by_kind[static_cast<size_t>(target.kind)];
    if (items_.size() >= opts_.settings.max_pending) {
        rec.state = NotifyState::Dropped;
        rec.last_error = "dropped: " + std::to_string(items_.size()) +
                         " notifications are waiting for delivery ([notifications] max_pending)";
        ++per.dropped;
        ++stats_.total_dropped;
        spdlog::warn("NOTIFY_DROPPED {} {} for {}: {}", model::name(event), rec.target, rec.run_id, rec.last_error);
        store_.addNotification(rec);
        return;
    }
    store_.addNotification(rec);
    const std::string id = rec.id;
    items_.emplace(id, Item{std::move(rec), false, false});
    fresh_.push_back(id);
}

void Notifier::afterRecord() {
    if (fresh_.empty()) return;
    // Delivery waits until the rows are durable, and also the run's final record the engine
    // writes right after runEnding(): the write mark is taken once that call has returned.
    auto ids = std::make_shared<std::vector<std::string>>(std::move(fresh_));
    fresh_.clear();
    asio::post(io_, [this, ids, alive = alive_] {
        if (!*alive) return;
        store_.whenDurable(store_.writeMark(), [this, ids, alive](bool) {
            if (!*alive) return;
            for (const auto& id : *ids) {
                if (auto it = items_.find(id); it != items_.end()) it->second.durable = true;
            }
            schedule();
        });
    });
}

void Notifier::schedule() {
    const int64_t now = nowMillis();
    std::optional<int64_t> next;
    for (auto& [id, item] : items_) {
        if (item.in_flight || !item.durable) continue;
        if (item.rec.next_attempt_ms <= now) {
            if (in_flight_ >= static_cast<size_t>(kDeliveryThreads) * 2) {
                next = now + 100;
                break;
            }
            deliver(item);
        } else if (!next || item.rec.next_attempt_ms < *next) {
            next = item.rec.next_attempt_ms;
        }
    }
    if (!next) return;
    timer_.expires_after(std::chrono::milliseconds(std::max<int64_t>(1, *next - now)));
    timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
        if (!ec && *alive) schedule();
    });
}

void Notifier::deliver(Item& item) {
    item.in_flight = true;
    ++in_flight_;
    const store::NotificationRecord rec = item.rec;
    Facts facts;
    std::string err;
    if (!parseFacts(rec.payload, &facts, &err)) {
        asio::post(io_, [this, id = rec.id, err, alive = alive_] {
            if (*alive) delivered(id, false, err, "", false);
        });
        return;
    }
    if (rec.kind == NotifyKind::Webhook) {
        postWebhook(rec, facts, [this, id = rec.id, alive = alive_](bool ok, bool retryable, std::string error) {
            if (*alive) delivered(id, ok, ok ? "" : error, "", retryable);
        });
        return;
    }
    submit([this, rec, facts, alive = alive_] {
        std::string error, detail;
        const bool ok = attempt(rec, facts, &error, &detail);
        asio::post(io_, [this, id = rec.id, ok, error, detail, alive] {
            if (*alive) delivered(id, ok, error, detail, true);
        });
    });
}

bool Notifier::attempt(const store::NotificationRecord& rec, const Facts& facts, std::string* err, std::string* detail) {
    const auto& s = opts_.settings;
    if (rec.kind == NotifyKind::Command) {
        ProcessSpec spec;
        spec.argv = {"/bin/sh", "-c", targetValue(rec)};
        spec.env = commandEnvironment(facts);
        spec.stdin_data = factsJson(facts);
        spec.run_as = rec.run_as;
        spec.timeout = s.timeout;
        spec.cancel = &stopping_;
        return runProcess(spec, err);
    }
    MailOptions mo;
    mo.from = s.mail_from;
    mo.to = addresses(targetValue(rec));
    mo.log_lines = s.log_lines;
    mo.now_ms = nowMillis();
    mo.hostname = hostname_;
    const std::string mail = composeMail(facts, mo, readTail);
    if (!isExecutable(s.sendmail)) {
        if (!appendMbox(stats_.mbox_path, mboxEntry(s.mail_from, mo.now_ms, mail), kMaxMboxBytes, err)) return false;
        *detail = "no MTA (" + s.sendmail + " is missing): written to " + stats_.mbox_path;
        return true;
    }
    ProcessSpec spec;
    spec.argv = {s.sendmail, "-t", "-oi"};
    spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    spec.stdin_data = mail;
    spec.timeout = s.timeout;
    spec.cancel = &stopping_;
    if (!runProcess(spec, err)) {
        *err = s.sendmail + ": " + *err;
        return false;
    }
    return true;
}

void Notifier::delivered(const std::string& id, bool ok, std::string error, std::string detail, bool retryable) {
    auto it = items_.find(id);
    if (it == items_.end()) return;
    --in_flight_;
    auto& item = it->second;
    item.in_flight = false;
    auto& rec = item.rec;
    auto& per = stats_.by_kind[static_cast<size_t>(rec.kind)];
    ++rec.attempts;
    const int64_t now = nowMillis();
    if (ok) {
        rec.state = NotifyState::Sent;
        rec.sent_ms = now;
        rec.last_error = detail;
        if (rec.kind == NotifyKind::Mail && !detail.empty()) stats_.mail_to_mbox = true;
        ++per.sent;
        ++stats_.total_sent;
        spdlog::info("NOTIFY_SENT {} {} for {} (attempt {}){}", model::name(rec.event), rec.target, rec.run_id,
                     rec.attempts, detail.empty() ? "" : ": " + detail);
        store_.updateNotification(rec);
        items_.erase(it);
        schedule();
        return;
    }
    rec.last_error = cutUtf8(error, 1024);
    ++per.attempts_failed;
    stats_.last_error = rec.target + ": " + rec.last_error;
    stats_.last_error_ms = now;
    if (rec.attempts > opts_.settings.retries || !retryable) {
        rec.state = NotifyState::Failed;
        ++per.failed;
        ++stats_.total_failed;
        spdlog::error("NOTIFY_GAVE_UP {} {} for {}: {} attempt(s) failed, the last: {}", model::name(rec.event),
                      rec.target, rec.run_id, rec.attempts, rec.last_error);
        store_.updateNotification(rec);
        items_.erase(it);
        schedule();
        return;
    }
    int64_t delay = opts_.settings.retry_delay.count();
    for (int i = 1; i < rec.attempts && delay < kMaxRetryDelayMs; ++i) delay *= 2;
    delay = std::min(delay, kMaxRetryDelayMs);
    rec.next_attempt_ms = now + delay;
    spdlog::warn("NOTIFY_FAILED {} {} for {} (attempt {} of {}): {}; next attempt in {}", model::name(rec.event),
                 rec.target, rec.run_id, rec.attempts, opts_.settings.retries + 1, rec.last_error,
                 formatDuration(std::chrono::milliseconds(delay)));
    store_.updateNotification(rec);
    schedule();
}

bool Notifier::sendTest(const std::string& workflow, std::function<void(std::vector<TestResult>)> done,
                        std::string* err) {
    auto wf = lookup_ ? lookup_(workflow) : nullptr;
    if (!wf) {
        *err = "no workflow named '" + workflow + "' is loaded";
        return false;
    }
    const auto targets = targetsOf(workflow);
    if (targets.empty()) {
        *err = wf->notify_set ? "workflow '" + workflow + "' turns notifications off ([[notify]] on = [])"
                              : "workflow '" + workflow + "' has no [[notify]] and taskhub.toml has none either";
        return false;
    }
    struct Pending {
        std::vector<TestResult> results;
        size_t left = 0;
        std::function<void(std::vector<TestResult>)> done;
    };
    auto p = std::make_shared<Pending>();
    p->results.resize(targets.size());
    p->left = targets.size();
    p->done = std::move(done);
    const int64_t now = nowMillis();
    const std::string run_id =
        workflow + "@test-" + formatCompactUtc(std::chrono::floor<std::chrono::seconds>(
                                   std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(now))));
    const std::string run_as = runAsOf(workflow);
    for (size_t i = 0; i < targets.size(); ++i) {
        const auto& t = targets[i];
        store::NotificationRecord rec;
        rec.target = displayTarget(t);
        rec.destination = t.value;
        rec.kind = t.kind;
        rec.event = NotifyEvent::Test;
        rec.run_id = run_id;
        rec.workflow = workflow;
        rec.id = notificationId(run_id, NotifyEvent::Test, t.describe());
        rec.run_as = t.kind == NotifyKind::Command ? run_as : "";
        Facts f;
        f.sample = true;
        f.event = NotifyEvent::Test;
        f.notification_id = rec.id;
        f.run_id = run_id;
        f.workflow = workflow;
        f.state = "failed";
        f.trigger = "manual";
        f.message = "sample: this is what a notification of a failed run looks like";
        f.started_ms = now - 1000;
        f.ended_ms = now;
        f.failed_count = 1;
        f.failed.push_back({"example-task", "sample: exit status 1", ""});
        rec.payload = factsJson(f);
        p->results[i].target = rec.target;
        auto finish = [p, i](bool ok, std::string detail) {
            p->results[i].ok = ok;
            p->results[i].detail = std::move(detail);
            if (--p->left == 0) p->done(std::move(p->results));
        };
        if (t.kind == NotifyKind::Webhook) {
            postWebhook(rec, f, [finish, alive = alive_](bool ok, bool, std::string error) {
                if (*alive) finish(ok, error);
            });
            continue;
        }
        submit([this, rec, f, finish, alive = alive_] {
            std::string error, detail;
            const bool ok = attempt(rec, f, &error, &detail);
            asio::post(io_, [finish, ok, error, detail, alive] {
                if (*alive) finish(ok, ok ? detail : error);
            });
        });
    }
    return true;
}

NotifyStats Notifier::stats() const {
    NotifyStats s = stats_;
    for (auto& k : s.by_kind) k.pending = 0;
    for (const auto& [id, item] : items_) ++s.by_kind[static_cast<size_t>(item.rec.kind)].pending;
    return s;
}

} // namespace taskhub::notify
