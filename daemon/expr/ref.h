// What a template or condition refers to: a run param, an output of an upstream task, the state
// of an upstream task, or (in a task with foreach) the item and index of an instance; params,
// outputs and items may be followed by a path into a JSON value. Shared by Template (template.h)
// and Condition (condition.h).
#ifndef TASKHUB_EXPR_REF_H
#define TASKHUB_EXPR_REF_H

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::expr {

// One step of a path into a JSON value: `.KEY` (an object's field; KEY is [A-Za-z_][A-Za-z0-9_]*
// and not "length"), `[N]` (an array's element, N a non-negative decimal) or `.length` (the
// number of elements of an array or object, of characters of a string; the last step only).
struct PathStep {
    enum Kind { Key, Index, Length };
    Kind kind = Key;
    std::string key;    // Key
    uint64_t index = 0; // Index

    bool operator==(const PathStep&) const = default;
};

struct Ref {
    // Param: params.NAME; Output: tasks.ID.outputs.NAME; TaskState: tasks.ID.state;
    // Item: item (the current item of a foreach instance); Index: index (its position, no path).
    enum Kind { Param, Output, TaskState, Item, Index };
    Kind kind = Param;
    std::string task; // Output, TaskState: the task id; else empty
    std::string name; // Param: the param name; Output: the output name; else empty
    std::vector<PathStep> path{}; // Param, Output, Item: the steps after the name; else empty

    bool operator==(const Ref&) const = default;
};

// The reference as written in a condition: "params.NAME", "tasks.ID.outputs.NAME",
// "tasks.ID.state", "item" or "index", followed by its path, e.g. "tasks.list.outputs.files[0]"
// (a template writes the same inside "${" and "}").
std::string toString(const Ref& ref);
// A path as written: ".db.host", "[0].name", ".length"; "" for no steps.
std::string toString(const std::vector<PathStep>& path);

// Resolves a reference when a template is expanded or a condition evaluated. std::nullopt means
// the value is unknown (e.g. an output the task did not publish); both treat it as "".
// A lookup that finds an existing value the path cannot be followed into also answers
// std::nullopt, and reports why through a channel of its own (the engine's lookupFor() takes an
// error string), so that the caller can fail the task instead of using "".
// Called on the caller's thread, synchronously, possibly several times per reference.
using Lookup = std::function<std::optional<std::string>(const Ref&)>;

// "${tasks.list.outputs.files[12]}: index out of range (array of 3)": a reference whose path could
// not be followed, from the reason navigate() gave ("[12]: index out of range (array of 3)").
std::string refPathError(const Ref& ref, const std::string& why);

// True for a param or output name: [A-Za-z_][A-Za-z0-9_]*.
bool isValidName(std::string_view name);

// The value at `path` inside the JSON text json_text, as a template inserts it: a JSON string
// yields its content, a number, true, false or null its JSON text, an array or object its
// compact JSON text (model/json_text.h); a `.length` step yields a decimal count. With no steps,
// the whole value so rendered. std::nullopt with *err set when json_text is not JSON, or a step
// cannot be taken: a key the object lacks, an index out of range, a step into a value of another
// type. *err starts with the path up to the failing step, for the caller to put the reference's
// root before it: "[12]: index out of range (array of 3)", ".db.port: no key 'port' (object with
// keys host, name)", ".x: not an object (a string of 4 characters)".
std::optional<std::string> navigate(std::string_view json_text, const std::vector<PathStep>& path,
                                    std::string* err);
// The same for a plain text value (a plain output, a param that is not JSON): only a path of
// one `.length` step applies (its characters, UTF-8 code points); any other sets *err
// (".x: a plain text value has no fields; only .length applies").
std::optional<std::string> navigateText(std::string_view text, const std::vector<PathStep>& path,
                                        std::string* err);

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_REF_H
