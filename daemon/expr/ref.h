// What a template or condition refers to: a run param, an output of an upstream task, or the
// state of an upstream task. Shared by Template (template.h) and Condition (condition.h).
#ifndef TASKHUB_EXPR_REF_H
#define TASKHUB_EXPR_REF_H

#include <functional>
#include <optional>
#include <string>

namespace taskhub::expr {

struct Ref {
    enum Kind { Param, Output, TaskState, Item, Index };
    Kind kind = Param;
    std::string task; // Output, TaskState: the task id; empty for Param
    std::string name; // Param: the param name; Output: the output name; empty for TaskState

    bool operator==(const Ref&) const = default;
};

// The reference as written in a condition: "params.NAME", "tasks.ID.outputs.NAME" or
// "tasks.ID.state" (a template writes the same inside "${" and "}").
std::string toString(const Ref& ref);

// Resolves a reference when a template is expanded or a condition evaluated. std::nullopt means
// the value is unknown (e.g. an output the task did not publish); both treat it as "".
// Called on the caller's thread, synchronously, possibly several times per reference.
using Lookup = std::function<std::optional<std::string>(const Ref&)>;

// True for a param or output name: [A-Za-z_][A-Za-z0-9_]*.
bool isValidName(std::string_view name);

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_REF_H
