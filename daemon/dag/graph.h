// Workflow graphs: validation of task ids and dependencies, and the progress of one run through
// its graph (which tasks become ready, which are skipped). Pure: no I/O, no clock, no threads.
#ifndef TASKHUB_DAG_GRAPH_H
#define TASKHUB_DAG_GRAPH_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace taskhub::dag {

struct NodeSpec {
    std::string id;
    std::vector<std::string> depends_on;
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
// the input (file) order.
class Graph {
public:
    Graph() = default;
    explicit Graph(const std::vector<NodeSpec>& nodes);

    size_t size() const noexcept { return ids_.size(); }
    const std::string& id(uint32_t node) const { return ids_[node]; }
    std::optional<uint32_t> index(std::string_view id) const;
    const std::vector<uint32_t>& dependencies(uint32_t node) const { return deps_[node]; }
    const std::vector<uint32_t>& dependents(uint32_t node) const { return dependents_[node]; }

private:
    std::vector<std::string> ids_;
    std::vector<std::vector<uint32_t>> deps_;
    std::vector<std::vector<uint32_t>> dependents_;
    std::unordered_map<std::string, uint32_t> by_id_;
};

enum class Outcome { Succeeded, Failed, Skipped, Cancelled };

// Tracks one run's way through a Graph with the all_success rule: a node becomes ready when all
// its dependencies succeeded; it is skipped when any of them did not (failed, skipped or
// cancelled), and that skip propagates downstream. Not thread-safe; one per run.
class Progress {
public:
    explicit Progress(const Graph& graph);

    // Nodes with no dependencies, in index order. Call once at the start of a run.
    std::vector<uint32_t> start();

    // Records node's outcome. Appends to *ready the dependents that became ready and to
    // *skipped every node that is now skipped because of it (transitively), each in index order
    // of discovery. A node is reported at most once over the life of the Progress.
    void finish(uint32_t node, Outcome outcome, std::vector<uint32_t>* ready,
                std::vector<uint32_t>* skipped);

private:
    const Graph* graph_;
    std::vector<uint32_t> pending_;  // unfinished dependencies per node
    std::vector<uint8_t> blocked_;   // some dependency did not succeed
};

} // namespace taskhub::dag

#endif // TASKHUB_DAG_GRAPH_H
