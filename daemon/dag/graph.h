// Workflow graphs: validation of task ids and dependencies, and the progress of one run through
// its graph under the tasks' trigger rules (which tasks become ready, which are skipped). Pure:
// no I/O, no clock, no threads.
#ifndef TASKHUB_DAG_GRAPH_H
#define TASKHUB_DAG_GRAPH_H

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/names.h"

namespace taskhub::dag {

// A node as validate() and Graph read it: views of text the caller keeps alive during the call.
struct NodeSpec {
    std::string_view id;
    std::vector<std::string_view> depends_on;
};

// One problem found by validate(): the node (index into the input), the key at fault ("id" or
// "depends_on") and a message saying what is wrong.
struct Problem {
    size_t node = 0;
    std::string key;
    std::string message;
};

// Checks that ids are non-empty and unique, every dependency names an existing node, nothing
// depends on itself, and there is no cycle. A cycle is reported once, naming it in order, e.g.
// "dependency cycle: a -> b -> c -> a". Returns the problems in input order.
std::vector<Problem> validate(const std::vector<NodeSpec>& nodes);

// An immutable, index-based graph built from specs that passed validate(). Node indexes follow
// the input (file) order. Compact, for workflows of 100,000 tasks: the ids are one block of text,
// the edges two arrays of indexes with an offset per node (compressed sparse rows), and the
// lookup by id an open-addressing table of node indexes; about 30 bytes per node and 8 per edge.
class Graph {
public:
    Graph() = default;
    explicit Graph(const std::vector<NodeSpec>& nodes);

    size_t size() const noexcept { return id_start_.empty() ? 0 : id_start_.size() - 1; }
    std::string_view id(uint32_t node) const {
        return std::string_view(ids_).substr(id_start_[node], id_start_[node + 1] - id_start_[node]);
    }
    std::optional<uint32_t> index(std::string_view id) const;
    std::span<const uint32_t> dependencies(uint32_t node) const { return row(deps_, dep_start_, node); }
    std::span<const uint32_t> dependents(uint32_t node) const { return row(dependents_, dependent_start_, node); }

private:
    static std::span<const uint32_t> row(const std::vector<uint32_t>& edges, const std::vector<uint32_t>& start,
                                         uint32_t node) {
        return std::span<const uint32_t>(edges).subspan(start[node], start[node + 1] - start[node]);
    }
    // The slot of id in slots_: the one holding its node, or the empty one where it would go.
    size_t slotOf(std::string_view id) const;

    std::string ids_;                   // every id, one after another
    std::vector<uint32_t> id_start_;    // node i's id is ids_[id_start_[i], id_start_[i + 1])
    std::vector<uint32_t> deps_;        // node i's dependencies: deps_[dep_start_[i], dep_start_[i + 1])
    std::vector<uint32_t> dep_start_;
    std::vector<uint32_t> dependents_;  // the same for the nodes that depend on node i
    std::vector<uint32_t> dependent_start_;
    std::vector<uint32_t> slots_;       // node + 1, or 0 for an empty slot; a power of two in size
};

enum class Outcome { Succeeded, Failed, Skipped, Cancelled };

// When a node may run, given how its dependencies ended (Cancelled counts as Failed):
// - AllSuccess: once all ended, if all succeeded; skipped as soon as one did not succeed.
// - AllFailed:  once all ended, if all failed; skipped as soon as one succeeded or was skipped.
// - AllDone:    once all ended, whatever their outcome.
// - OneSuccess: as soon as one succeeded; skipped once all ended and none succeeded.
// - OneFailed:  as soon as one failed; skipped once all ended and none failed.
// - NoneFailed: once all ended, if none failed; skipped as soon as one failed.
// - Always:     at once, without waiting for its dependencies.
// A node without dependencies is ready at the start under every rule.
enum class TriggerRule : uint8_t { AllSuccess, AllDone, AllFailed, OneSuccess, OneFailed, NoneFailed, Always };

} // namespace taskhub::dag

namespace taskhub::model {

// The names workflow files use for trigger_rule, also shown in run events.
template <>
struct NameTable<dag::TriggerRule> {
    static constexpr std::array<std::pair<dag::TriggerRule, std::string_view>, 7> entries{{
        {dag::TriggerRule::AllSuccess, "all_success"},
        {dag::TriggerRule::AllDone, "all_done"},
        {dag::TriggerRule::AllFailed, "all_failed"},
        {dag::TriggerRule::OneSuccess, "one_success"},
        {dag::TriggerRule::OneFailed, "one_failed"},
        {dag::TriggerRule::NoneFailed, "none_failed"},
        {dag::TriggerRule::Always, "always"},
    }};
};
static_assert(tableIsComplete<dag::TriggerRule>());

} // namespace taskhub::model

namespace taskhub::dag {

// The name from the table above (a string literal, so the pointer is NUL-terminated).
constexpr const char* toString(TriggerRule rule) { return model::name(rule).data(); }

// Tracks one run's way through a Graph: which nodes become ready and which are skipped, under
// each node's trigger rule. A skipped node is an outcome like any other, so skips propagate as
// the rules of the nodes downstream say. Not thread-safe; one per run.
class Progress {
public:
    // rules: one per node, or empty for AllSuccess everywhere.
    explicit Progress(const Graph& graph, std::vector<TriggerRule> rules = {});

    // The nodes that can start at once (no dependencies, or rule Always), in index order. Call
    // once at the start of a run.
    std::vector<uint32_t> start();

    // Records node's outcome. Appends to *ready the nodes whose rule is now met and to *skipped
    // every node now skipped (transitively: a skip is itself an outcome), in order of discovery.
    // A node is reported at most once over the life of the Progress, and a node that was
    // reported (or is running) is never reported again, even if more dependencies end later.
    void finish(uint32_t node, Outcome outcome, std::vector<uint32_t>* ready,
                std::vector<uint32_t>* skipped);

    // Rebuilds the progress of a run being retried: outcomes[i] is set for the nodes that keep
    // their outcome and empty for those to run again. Appends to *ready and *skipped what the
    // rules decide at once for the nodes to run again (and what follows from those skips).
    void restore(const std::vector<std::optional<Outcome>>& outcomes, std::vector<uint32_t>* ready,
                 std::vector<uint32_t>* skipped);

    // True once the node was reported ready or skipped (or given an outcome by restore()).
    bool decided(uint32_t node) const { return nodes_[node].decided != 0; }

    // A fan-out: the node ends as `parts` outcomes (its instances), and its dependents' rules
    // count each of them as an upstream outcome. Call once, when the fan-out is expanded (parts
    // > 0), before finishParts() or restore().
    void widen(uint32_t node, uint32_t parts);
    // Records a widened node's end as `succeeded` and `failed` parts (the rest of its parts
    // skipped), with finish()'s reporting. restore() counts them again while the node keeps
    // its outcome.
    void finishParts(uint32_t node, uint32_t succeeded, uint32_t failed, std::vector<uint32_t>* ready,
                     std::vector<uint32_t>* skipped);
    // How a widened node that keeps its outcome ended, for restore() (a rebuilt run).
    void setParts(uint32_t node, uint32_t succeeded, uint32_t failed);

private:
    enum class Verdict { Wait, Ready, Skip };
    Verdict evaluate(uint32_t node) const;
    void record(uint32_t node, Outcome outcome, std::vector<uint32_t>* ready,
                std::vector<uint32_t>* skipped);

    // Everything evaluate() reads about a node, together: on a large graph each dependent
    // touched costs one cache line, not one per field.
    struct Node {
        uint32_t total = 0;     // dependencies
        uint32_t ended = 0;     // dependencies that ended
        uint32_t succeeded = 0; // ... and of those, how many succeeded
        uint32_t failed = 0;    // ... failed or were cancelled
        TriggerRule rule = TriggerRule::AllSuccess;
        uint8_t decided = 0;    // reported ready or skipped (or restored with an outcome)
    };
    void count(uint32_t dependent, Outcome outcome);
    // Counts a widened node's parts into its dependents and evaluates them (record()'s work for
    // parts).
    void recordParts(uint32_t node, std::vector<uint32_t>* ready, std::vector<uint32_t>* skipped);

    struct Parts {
        uint32_t total = 0, succeeded = 0, failed = 0;
    };
    const Graph* graph_;
    std::vector<Node> nodes_;
    std::vector<std::pair<uint32_t, Parts>> parts_; // widened nodes (fan-outs); few, searched linearly
    Parts* partsOf(uint32_t node);
};

} // namespace taskhub::dag

#endif // TASKHUB_DAG_GRAPH_H
