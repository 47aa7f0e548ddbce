#include "dag/graph.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <tuple>
#include <unordered_map>

namespace taskhub::dag {

std::vector<Problem> validate(const std::vector<NodeSpec>& nodes) {
    std::vector<Problem> problems;
    std::unordered_map<std::string_view, size_t> first;
    for (size_t i = 0; i < nodes.size(); ++i) {
        const std::string_view id = nodes[i].id;
        if (id.empty()) {
            problems.push_back({i, "id", "task id must not be empty"});
            continue;
        }
        auto [it, inserted] = first.emplace(id, i);
        if (!inserted) {
            problems.push_back({i, "id", "duplicate task id '" + std::string(id) + "' (first defined by task #" +
                                             std::to_string(it->second + 1) + ")"});
        }
    }
    bool references_ok = true;
    for (size_t i = 0; i < nodes.size(); ++i) {
        for (const auto& dep : nodes[i].depends_on) {
            if (dep == nodes[i].id) {
                problems.push_back({i, "depends_on", "task '" + std::string(dep) + "' depends on itself"});
                references_ok = false;
            } else if (!first.count(dep)) {
                problems.push_back({i, "depends_on", "task '" + std::string(nodes[i].id) +
                                                         "' depends on unknown task '" + std::string(dep) + "'"});
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
                    for (auto it = from; it != path.end(); ++it) cycle.append(nodes[*it].id).append(" -> ");
                    cycle.append(nodes[dep].id);
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

Graph::Graph(const std::vector<NodeSpec>& nodes) {
    const size_t n = nodes.size();
    size_t text = 0, edges = 0;
    for (const auto& node : nodes) {
        text += node.id.size();
        edges += node.depends_on.size();
    }
    ids_.reserve(text);
    id_start_.reserve(n + 1);
    id_start_.push_back(0);
    slots_.assign(std::bit_ceil(n + n / 3 + 1), 0);
    for (uint32_t i = 0; i < n; ++i) {
        ids_.append(nodes[i].id);
        id_start_.push_back(static_cast<uint32_t>(ids_.size()));
        slots_[slotOf(nodes[i].id)] = i + 1;
    }
    // Dependencies in spec order; dependents counted first, then filled in node order.
    deps_.reserve(edges);
    dep_start_.reserve(n + 1);
    dep_start_.push_back(0);
    std::vector<uint32_t> count(n + 1, 0);
    for (const auto& node : nodes) {
        for (const auto dep : node.depends_on) {
            const uint32_t d = slots_[slotOf(dep)] - 1;
            deps_.push_back(d);
            ++count[d + 1];
        }
        dep_start_.push_back(static_cast<uint32_t>(deps_.size()));
    }
    for (size_t i = 0; i < n; ++i) count[i + 1] += count[i];
    dependent_start_ = count;
    dependents_.resize(edges);
    for (uint32_t i = 0; i < n; ++i) {
        for (uint32_t d : dependencies(i)) dependents_[count[d]++] = i;
    }
}

size_t Graph::slotOf(std::string_view id) const {
    const size_t mask = slots_.size() - 1;
    for (size_t s = std::hash<std::string_view>{}(id) & mask;; s = (s + 1) & mask) {
        if (slots_[s] == 0 || this->id(slots_[s] - 1) == id) return s;
    }
}

std::optional<uint32_t> Graph::index(std::string_view id) const {
    if (slots_.empty()) return std::nullopt;
    const uint32_t node = slots_[slotOf(id)];
    if (node == 0) return std::nullopt;
    return node - 1;
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

Progress::Parts* Progress::partsOf(uint32_t node) {
    for (auto& [n, p] : parts_) {
        if (n == node) return &p;
    }
    return nullptr;
}

void Progress::widen(uint32_t node, uint32_t parts) {
    if (parts == 0 || partsOf(node)) return;
    parts_.push_back({node, Parts{parts, 0, 0}});
    for (uint32_t d : graph_->dependents(node)) nodes_[d].total += parts - 1;
}

void Progress::recordParts(uint32_t node, std::vector<uint32_t>* ready, std::vector<uint32_t>* skipped) {
    const Parts& p = *partsOf(node);
    for (uint32_t d : graph_->dependents(node)) {
        auto& n = nodes_[d];
        n.ended += p.total;
        n.succeeded += p.succeeded;
        n.failed += p.failed;
        if (n.decided) continue;
        switch (evaluate(d)) {
        case Verdict::Wait: break;
        case Verdict::Ready:
            n.decided = 1;
            ready->push_back(d);
            break;
        case Verdict::Skip:
            n.decided = 1;
            skipped->push_back(d);
            record(d, Outcome::Skipped, ready, skipped);
            break;
        }
    }
}

void Progress::finishParts(uint32_t node, uint32_t succeeded, uint32_t failed, std::vector<uint32_t>* ready,
                           std::vector<uint32_t>* skipped) {
    Parts* p = partsOf(node);
    if (!p) return;
    p->succeeded = succeeded;
    p->failed = failed;
    nodes_[node].decided = 1;
    recordParts(node, ready, skipped);
}

void Progress::setParts(uint32_t node, uint32_t succeeded, uint32_t failed) {
    if (Parts* p = partsOf(node)) {
        p->succeeded = succeeded;
        p->failed = failed;
    }
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
        if (const Parts* p = partsOf(i)) {
            for (uint32_t d : graph_->dependents(i)) {
                nodes_[d].ended += p->total;
                nodes_[d].succeeded += p->succeeded;
                nodes_[d].failed += p->failed;
            }
            continue;
        }
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
