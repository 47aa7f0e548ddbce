// [policy]: what happens when runs meet: overlap, max_active_runs, catchup and catchup_window,
// on_failure, timeout.
#include "config/workflow_load.h"

namespace taskhub::config {

using namespace detail;

const char* toString(Overlap o) {
    switch (o) {
    case Overlap::Skip: return "skip";
    case Overlap::QueueOne: return "queue_one";
    case Overlap::QueueAll: return "queue_all";
    case Overlap::Replace: return "replace";
    case Overlap::Allow: return "allow";
    }
    return "?";
}

const char* toString(OnFailure o) { return o == OnFailure::FailFast ? "fail_fast" : "continue"; }

const char* toString(Catchup c) {
    switch (c) {
    case Catchup::None: return "none";
    case Catchup::Latest: return "latest";
    case Catchup::All: return "all";
    }
    return "?";
}

namespace detail {

namespace {

const std::set<std::string> kPolicyKeys = {"overlap", "max_active_runs", "catchup", "catchup_window",
                                           "on_failure", "timeout"};

} // namespace

void loadPolicy(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[policy] must be a table, found " + typeName(v));
        return;
    }
    const Value* max_active = nullptr;
    for (const auto& [key, kv] : v.as_table()) {
        const std::string what = "'policy." + key + "'";
        if (key == "overlap") {
            if (auto o = getChoice<Overlap>(kv, what,
                                            {{"skip", Overlap::Skip},
                                             {"queue_one", Overlap::QueueOne},
                                             {"queue_all", Overlap::QueueAll},
                                             {"replace", Overlap::Replace},
                                             {"allow", Overlap::Allow}},
                                            r))
                wf.overlap = wf.file_overlap = *o;
        } else if (key == "on_failure") {
            if (auto o = getChoice<OnFailure>(
                    kv, what, {{"fail_fast", OnFailure::FailFast}, {"continue", OnFailure::Continue}}, r))
                wf.on_failure = *o;
        } else if (key == "timeout") {
            if (auto d = getDuration(kv, what, r)) wf.timeout = *d;
        } else if (key == "max_active_runs") {
            if (auto n = getInt(kv, what, r, 1, 1000000)) {
                wf.max_active_runs = static_cast<int>(*n);
                max_active = &kv;
            }
        } else if (key == "catchup") {
            if (auto c = getChoice<Catchup>(kv, what,
                                            {{"none", Catchup::None}, {"latest", Catchup::Latest}, {"all", Catchup::All}},
                                            r))
                wf.catchup = wf.file_catchup = *c;
        } else if (key == "catchup_window") {
            if (auto d = getSeconds(kv, what, std::chrono::seconds(1), r)) wf.catchup_window = *d;
        } else {
            r.add(kv, "unknown key '" + key + "' in [policy]" + didYouMean(key, kPolicyKeys) +
                          " (accepted: " + joinKeys(kPolicyKeys) + ")");
        }
    }
    if (max_active && wf.overlap != Overlap::Allow) {
        r.add(*max_active, "'policy.max_active_runs' only applies with overlap = \"allow\" (this workflow has "
                           "overlap = \"" + std::string(toString(wf.overlap)) + "\")");
    }
}

} // namespace detail

} // namespace taskhub::config
