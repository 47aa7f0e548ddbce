#include "dag/graph.h"

#include <algorithm>
#include <tuple>

namespace taskhub::dag {

std::vector<Problem> validate(const std::vector<NodeSpec>& nodes) {
    std::vector<Problem> problems;
    std::unordered_map<std::string, size_t> first;
    for (size_t i = 0; i < nodes.size(); ++i) {
        const auto& id = nodes[i].id;
        if (id.empty()) {
            problems.push_back({i, "id", "task id must not be empty"});
            continue;
        }
        auto [it, inserted] = first.emplace(id, i);
        if (!inserted) {
            problems.push_back({i, "id", "duplicate task id '" + id + "' (first defined by task #" +
                                             std::to_string(it->second + 1) + ")"});
        }
    }
    bool references_ok = true;
    for (size_t i = 0; i < nodes.size(); ++i) {
        for (const auto& dep : nodes[i].depends_on) {
            if (dep == nodes[i].id) {
                problems.push_back({i, "depends_on", "task '" + dep + "' depends on itself"});
                references_ok = false;
            } else if (!first.count(dep)) {
                problems.push_back({i, "depends_on", "task '" + nodes[i].id +
                                                         "' depends on unknown task '" + dep + "'"});
                references_ok = false;
            }
        }
    }
    if (!references_ok || problems.size() > 0) return problems;

    // Depth-first search with colours; the stack of the current path names the cycle.
    enum : uint8_t { White, Grey, Black };
    std::vector<uint8_t> colour(nodes.size(), White);
    std::vector<size_t> path;
    std::vector<std::pair<size_t, size_t>> stack; // node, next dependency index
    for (size_t root = 0; root < nodes.size(); ++root) {
        if (colour[root] != White) continue;
        stack.push_back({root, 0});
        colour[root] = Grey;
        path.push_back(root);
        while (!stack.empty()) {
            auto& [node, next] = stack.back();
            if (next < nodes[node].depends_on.size()) {
                size_t dep = first.at(nodes[node].depends_on[next++]);
                if (colour[dep] == Grey) {
                    auto from = std::find(path.begin(), path.end(), dep);
                    std::string cycle;
                    for (auto it = from; it != path.end(); ++it) cycle += nodes[*it].id + " -> ";
                    cycle += nodes[dep].id;
                    problems.push_back({dep, "depends_on", "dependency cycle: " + cycle});
                    return problems;
                }
                if (colour[dep] == White) {
                    colour[dep] = Grey;
                    path.push_back(dep);
                    stack.push_back({dep, 0});
                }
            } else {
                colour[node] = Black;
                path.pop_back();
                stack.pop_back();
            }
        }
    }
    return problems;
}

Graph::Graph(const std::vector<NodeSpec>& nodes)
    : ids_(nodes.size()), deps_(nodes.size()), dependents_(nodes.size()) {
    for (uint32_t i = 0; i < nodes.size(); ++i) {
        ids_[i] = nodes[i].id;
        by_id_.emplace(nodes[i].id, i);
    }
    for (uint32_t i = 0; i < nodes.size(); ++i) {
        for (const auto& dep : nodes[i].depends_on) {
            uint32_t d = by_id_.at(dep);
            deps_[i].push_back(d);
            dependents_[d].push_back(i);
        }
    }
}

std::optional<uint32_t> Graph::index(std::string_view id) const {
    auto it = by_id_.find(std::string(id));
    if (it == by_id_.end()) return std::nullopt;
    return it->second;
}

Progress::Progress(const Graph& graph, std::vector<TriggerRule> rules)
    : graph_(&graph), nodes_(graph.size()) {
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
        nodes_[i].total = static_cast<uint32_t>(graph.dependencies(i).size());
        if (!rules.empty()) nodes_[i].rule = rules[i];
    }
}

void Progress::count(uint32_t d, Outcome outcome) {
    auto& node = nodes_[d];
    ++node.ended;
    if (outcome == Outcome::Succeeded) ++node.succeeded;
    else if (outcome == Outcome::Failed || outcome == Outcome::Cancelled) ++node.failed;
}

Progress::Verdict Progress::evaluate(uint32_t n) const {
    const Node& node = nodes_[n];
    if (node.total == 0) return Verdict::Ready;
    const uint32_t ended = node.ended, ok = node.succeeded, failed = node.failed;
    const bool all_ended = ended == node.total;
    switch (node.rule) {
    case TriggerRule::AllSuccess:
        if (ok != ended) return Verdict::Skip;
        return all_ended ? Verdict::Ready : Verdict::Wait;
    case TriggerRule::AllFailed:
        if (failed != ended) return Verdict::Skip;
        return all_ended ? Verdict::Ready : Verdict::Wait;
    case TriggerRule::AllDone: return all_ended ? Verdict::Ready : Verdict::Wait;
    case TriggerRule::OneSuccess:
        if (ok > 0) return Verdict::Ready;
        return all_ended ? Verdict::Skip : Verdict::Wait;
    case TriggerRule::OneFailed:
        if (failed > 0) return Verdict::Ready;
        return all_ended ? Verdict::Skip : Verdict::Wait;
    case TriggerRule::NoneFailed:
        if (failed > 0) return Verdict::Skip;
        return all_ended ? Verdict::Ready : Verdict::Wait;
    case TriggerRule::Always: return Verdict::Ready;
    }
    return Verdict::Wait;
}

std::vector<uint32_t> Progress::start() {
    std::vector<uint32_t> ready;
    for (uint32_t i = 0; i < graph_->size(); ++i) {
        if (nodes_[i].total == 0 || nodes_[i].rule == TriggerRule::Always) {
            nodes_[i].decided = 1;
            ready.push_back(i);
        }
    }
    return ready;
}

void Progress::record(uint32_t node, Outcome outcome, std::vector<uint32_t>* ready,
                      std::vector<uint32_t>* skipped) {
    std::vector<std::pair<uint32_t, Outcome>> work; // skips still to follow (allocated only for them)
    for (;;) {
        for (uint32_t d : graph_->dependents(node)) {
            count(d, outcome);
            if (nodes_[d].decided) continue;
            switch (evaluate(d)) {
            case Verdict::Wait: break;
            case Verdict::Ready:
                nodes_[d].decided = 1;
                ready->push_back(d);
                break;
            case Verdict::Skip:
                nodes_[d].decided = 1;
                skipped->push_back(d);
                work.push_back({d, Outcome::Skipped});
                break;
            }
        }
        if (work.empty()) return;
        std::tie(node, outcome) = work.back();
        work.pop_back();
    }
}

void Progress::finish(uint32_t node, Outcome outcome, std::vector<uint32_t>* ready,
                      std::vector<uint32_t>* skipped) {
    nodes_[node].decided = 1;
    record(node, outcome, ready, skipped);
}

void Progress::restore(const std::vector<std::optional<Outcome>>& outcomes,
                       std::vector<uint32_t>* ready, std::vector<uint32_t>* skipped) {
    const uint32_t n = static_cast<uint32_t>(graph_->size());
    for (uint32_t i = 0; i < n; ++i) {
        auto& node = nodes_[i];
        node.ended = node.succeeded = node.failed = 0;
        node.decided = outcomes[i] ? 1 : 0;
    }
    for (uint32_t i = 0; i < n; ++i) {
        if (!outcomes[i]) continue;
        for (uint32_t d : graph_->dependents(i)) count(d, *outcomes[i]);
    }
    for (uint32_t i = 0; i < n; ++i) {
        if (nodes_[i].decided) continue;
        switch (evaluate(i)) {
        case Verdict::Wait: break;
        case Verdict::Ready:
            nodes_[i].decided = 1;
            ready->push_back(i);
            break;
        case Verdict::Skip:
            nodes_[i].decided = 1;
            skipped->push_back(i);
            record(i, Outcome::Skipped, ready, skipped);
            break;
        }
    }
}

} // namespace taskhub::dag
