// Templates in workflow strings: "${params.NAME}" and "${tasks.ID.outputs.NAME}" are replaced by
// a run param and an upstream task's output; "$${" stands for a literal "${". Any other "$" is
// literal. No whitespace is allowed inside "${...}".
//
// A Template is parsed once, when the workflow file is loaded, and is immutable afterwards
// (safe to share between threads).
#ifndef TASKHUB_EXPR_TEMPLATE_H
#define TASKHUB_EXPR_TEMPLATE_H

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "expr/ref.h"

namespace taskhub::expr {

class Template {
public:
    // Parses text. On a syntax error returns a message naming the 1-based column, what is wrong
    // and what would be right, e.g. "column 9: '${' is not closed (expected '}' after the
    // reference; write '$${' for a literal '${')".
    static std::variant<Template, std::string> parse(std::string_view text);

    // The references, in order of appearance (a reference used twice appears twice).
    const std::vector<Ref>& refs() const { return refs_; }
    // True when expand() returns the text unchanged: no reference and no "$${" escape.
    bool empty() const { return refs_.empty() && !escaped_; }
    // The text with every reference replaced by lookup's value ("" when lookup returns
    // std::nullopt) and every "$${" by "${". Values are inserted as they are, never re-expanded.
    std::string expand(const Lookup& lookup) const;

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

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_TEMPLATE_H
