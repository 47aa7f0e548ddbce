// Notifications of issue 16: the engine's outcomes (and missed deadlines) become notifications
// in a durable outbox (the store's notifications table), delivered to command, mail and webhook
// targets with retries, off the event loop. docs/operations.md ("Notifications") describes what
// operators see; docs/architecture.md ("notify") how it fits.
//
// Events (model::NotifyEvent) of top-level runs only (a child run's outcome reaches its parent):
//   failure   the run ended failed (a run timeout is a failure; a cancelled run sends nothing)
//   success   it succeeded
//   recovery  it succeeded and the workflow's previous succeeded-or-failed run had failed; a
//             target that wants both success and recovery gets only recovery for it
//   lost      recovery after a crash found attempts of the run lost (once per run)
//   deadline_missed  raise(), from the deadline module
// A workflow with [[notify]] uses its own targets, any other taskhub.toml's.
//
// Durability: a run's notifications are handed to the store in runEnding(), before its final
// record, so they are durable whenever its end is; exactly one row per (run, event, target).
// Delivery starts once they are durable; after a restart, pending ones are delivered. A delivery
// in flight at a crash is made again: receivers dedupe by the notification id
// (TASKHUB_NOTIFICATION_ID, X-TaskHub-Notification-Id, the mail's Message-ID).
//
// Threading: every method on the event-loop thread. Commands and sendmail run on the notifier's
// own delivery threads (at most kDeliveryThreads, started as deliveries need them: a daemon that
// never notifies runs none): a hanging notifier holds one of them for at most [notifications]
// timeout and never a run.
#ifndef TASKHUB_NOTIFY_NOTIFIER_H
#define TASKHUB_NOTIFY_NOTIFIER_H

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config/workflow.h"
#include "engine/observer.h"
#include "notify/message.h"
#include "store/records.h"

namespace taskhub::store {
class Store;
}

namespace taskhub::notify {

class WebhookClient;

// Counters for status and metrics, per target kind (indexed by model::NotifyKind).
struct NotifyStats {
    struct PerKind {
        uint64_t sent = 0;    // delivered since taskhubd started
        uint64_t failed = 0;  // given up since taskhubd started
        uint64_t dropped = 0; // not queued (max_pending) since taskhubd started
        uint64_t attempts_failed = 0; // failed delivery attempts (each retry counts)
        size_t pending = 0;   // waiting for delivery now
    };
    PerKind by_kind[3];
    // Over the whole outbox (all time, from the store at start plus what happened since).
    int64_t total_sent = 0;
    int64_t total_failed = 0;
    int64_t total_dropped = 0;
    std::string last_error;      // the latest failed attempt: "mail: ops@x.org: exit 75: ..."
    int64_t last_error_ms = 0;
    bool mail_to_mbox = false;   // no MTA: mail goes to mbox_path
    std::string mbox_path;
};

// What the deadline module knows of a missed firing.
struct DeadlineFacts {
    std::string workflow;
    std::string firing_id;       // "<workflow>@<instant>": the run id the firing has or would have
    int64_t scheduled_ms = 0;
    int64_t deadline_ms = 0;     // scheduled + deadline
    std::optional<model::RunState> run_state; // when a run of the firing exists
};

// The outcome of one target of `notify test`.
struct TestResult {
    std::string target; // as the outbox names it (a webhook URL without credentials and query)
    bool ok = false;
    std::string detail; // the error, or where the mail went
};

class Notifier final : public engine::EngineObserver {
public:
    using WorkflowLookup = std::function<std::shared_ptr<const config::Workflow>(const std::string&)>;
    struct Options {
        config::NotificationSettings settings;
        std::vector<config::NotifyTarget> defaults; // taskhub.toml's [[notify]]
        std::string default_run_as;                 // taskhub.toml's default_run_as
        std::filesystem::path state_dir;            // mail fallback: state_dir/mail/undelivered.mbox
        std::filesystem::path log_dir;              // task logs: log_dir/<run>/<task>.<attempt>.log
    };
    static constexpr int kDeliveryThreads = 4;

    Notifier(boost::asio::io_context& io, store::Store& store, Options options, WorkflowLookup lookup);
    ~Notifier() override; // stops the delivery threads (waits for attempts in flight, bounded by timeout)
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    // Sets the webhook client (owned elsewhere; may stay unset: webhook targets then fail).
    void setWebhookClient(WebhookClient* client) { webhook_ = client; }

    // Start-up, after the store is open and before engine recovery: seeds each workflow's last
    // outcome and the outbox counts from the store, and logs NOTIFY_NO_MTA when sendmail is
    // missing and mail targets exist (configured ones: the daemon's and the loaded workflows').
    void start(const std::vector<std::shared_ptr<const config::Workflow>>& workflows);
    // After recovery: delivers the pending notifications of the outbox.
    void resumeDelivery();

    // engine::EngineObserver
    void runEnding(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) override;
    void attemptLost(const store::RunRecord& run, const store::TaskRecord& task) override;

    // A scheduled firing missed its workflow's deadline (the deadline module's callback).
    void raise(model::NotifyEvent event, const DeadlineFacts& facts);

    // `taskhubctl notify test WORKFLOW`: a sample to each target of the workflow (its own or the
    // daemon's); done gets one result per target once all are through (on the loop). Not
    // recorded in the outbox, not retried. false with *err for an unknown workflow or no targets.
    bool sendTest(const std::string& workflow, std::function<void(std::vector<TestResult>)> done, std::string* err);

    NotifyStats stats() const;
    // The targets that apply to a workflow (its own [[notify]] or the daemon's).
    std::vector<config::NotifyTarget> targetsOf(const std::string& workflow) const;

private:
    struct Item {
        store::NotificationRecord rec;
        bool in_flight = false;
        bool durable = false;
    };
    // Records one notification of event for target (pending, or dropped beyond max_pending);
    // afterRecord() then starts their delivery once they are durable.
    void record(model::NotifyEvent event, const Facts& base, const config::NotifyTarget& target,
                const std::string& run_as);
    void afterRecord();
    void schedule();
    void deliver(Item& item);
    // One attempt's outcome; a failure that is not retryable (a webhook's 4xx) gives up at once.
    void delivered(const std::string& id, bool ok, std::string error, std::string detail, bool retryable);
    // A target as the outbox, logs and `show` name it: a webhook URL without credentials and query.
    static std::string displayTarget(const config::NotifyTarget& t);
    // Blocking, on a delivery thread: one attempt for a command or mail target.
    bool attempt(const store::NotificationRecord& rec, const Facts& facts, std::string* err, std::string* detail);
    // One POST through the webhook client; done(ok, retryable, error) on the loop
    // (notifier_webhook.cc).
    void postWebhook(const store::NotificationRecord& rec, const Facts& facts,
                     std::function<void(bool, bool, std::string)> done);
    void submit(std::function<void()> job);
    void workerLoop();
    std::string runAsOf(const std::string& workflow) const;
    Facts runFacts(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) const;
    bool sendmailPresent() const;

    boost::asio::io_context& io_;
    store::Store& store_;
    Options opts_;
    WorkflowLookup lookup_;
    WebhookClient* webhook_ = nullptr;
    boost::asio::steady_timer timer_;
    std::map<std::string, model::RunState> last_outcome_; // per workflow: succeeded or failed
    std::set<std::string> lost_sent_;                     // runs whose lost notification is recorded
    std::map<std::string, Item> items_;                   // pending notifications by id
    std::vector<std::string> fresh_;                      // recorded, waiting for afterRecord()
    size_t in_flight_ = 0;
    NotifyStats stats_;
    std::string hostname_;

    // Delivery threads.
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_; // guarded by mu_
    bool quit_ = false;                      // guarded by mu_
    size_t idle_ = 0;                        // delivery threads waiting for a job; guarded by mu_
    std::atomic<bool> stopping_{false};      // the destructor: programs in flight are killed
    std::vector<std::thread> threads_;       // started by submit(), on the loop thread
    std::shared_ptr<bool> alive_;            // posted results check it: the notifier may be gone
};

} // namespace taskhub::notify

#endif // TASKHUB_NOTIFY_NOTIFIER_H
