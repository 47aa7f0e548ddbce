// Templates in workflow strings: "${params.NAME}" and "${tasks.ID.outputs.NAME}" are replaced by
// a run param and an upstream task's output, either followed by a path into a JSON value
// ("${tasks.list.outputs.files[0]}", "${tasks.cfg.outputs.db.host}",
// "${tasks.list.outputs.files.length}"; ref.h); "${item...}" and "${index}" by a foreach
// instance's item and index. "$${" stands for a literal "${". Any other "$" is literal. No
// whitespace is allowed inside "${...}".
//
// A Template is parsed once, when the workflow file is loaded, and is immutable afterwards
// (safe to share between threads).
#ifndef TASKHUB_EXPR_TEMPLATE_H
#define TASKHUB_EXPR_TEMPLATE_H

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "expr/ref.h"

namespace taskhub::expr {

class Template {
public:
    // Parses text. On a syntax error returns nullopt and *err names the 1-based column, what is
    // wrong and what would be right, e.g. "column 9: '${' is not closed (expected '}' after the
    // reference; write '$${' for a literal '${')".
    static std::optional<Template> parse(std::string_view text, std::string* err);

    // The references, in order of appearance (a reference used twice appears twice).
    const std::vector<Ref>& refs() const { return refs_; }
    // True when expand() returns the text unchanged: no reference and no "$${" escape.
    bool empty() const { return refs_.empty() && !escaped_; }
    // The text with every reference replaced by lookup's value ("" when lookup returns
    // std::nullopt) and every "$${" by "${". Values are inserted as they are, never re-expanded.
    std::string expand(const Lookup& lookup) const;
    // Like expand(), but each value first passes through escape(i, value), i being the
    // reference's index in refs() (shell_context.h escapes values for the shell this way).
    // nullopt when escape returns nullopt for any value; *failed_ref is then that index.
    using Escape = std::function<std::optional<std::string>(size_t, std::string_view)>;
    std::optional<std::string> expand(const Lookup& lookup, const Escape& escape, size_t* failed_ref) const;
    // The literal text around the references, "$${" already turned into "${": literals()[i]
    // comes right before refs()[i], and the last one after the last reference.
    std::vector<std::string_view> literals() const;

private:
    struct Part {
        std::string literal; // text before the reference
        int ref = -1;        // index into refs_, or -1 for a trailing literal
    };
    std::vector<Part> parts_;
    std::vector<Ref> refs_;
    bool escaped_ = false;
};

// Expands every string value (at any depth, not the keys) inside a JSON object text, such as a
// task's params_json, and returns the object serialised again with proper JSON escaping. A
// string that is not a valid template (which a loaded workflow never has) is left as it is.
// Returns json unchanged when it contains no "${". Throws std::invalid_argument when json is
// not a JSON object (a programmer error: params_json always is one).
std::string expandJsonStrings(std::string_view json, const Lookup& lookup);

// The same, except that the string values of the top-level keys named in shell_keys (a plugin's
// shell_params) are POSIX shell text: each value is escaped for the shell context its reference
// sits in (shell_context.h), so that the shell receives it as literal data. Returns nullopt with
// *err set when that cannot be done: a value holds a NUL byte (no shell word can carry one), or
// a reference sits in a context the loader should have refused.
std::optional<std::string> expandJsonStrings(std::string_view json, const Lookup& lookup,
                                             const std::vector<std::string>& shell_keys, std::string* err);

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_TEMPLATE_H
