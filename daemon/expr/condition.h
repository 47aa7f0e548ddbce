// `when` conditions of workflow tasks:
//
//   or      := and ('||' and)*
//   and     := unary ('&&' unary)*
//   unary   := '!' unary | cmp
//   cmp     := operand (('==' | '!=' | '<' | '<=' | '>' | '>=') operand)?
//   operand := ref | 'text' | "text" | number | true | false | '(' or ')'
//   ref     := params.NAME path | tasks.ID.outputs.NAME path | tasks.ID.state | item path | index
//   path    := ('.' KEY | '[' N ']')* ('.length')?      (ref.h PathStep)
//
// A path reads into a typed (JSON) output or a param holding JSON text: e.g.
// `tasks.list.outputs.files.length > 0`, `tasks.cfg.outputs.db.port == 5432`.
// Every operand is a text: a ref's value (an unknown one, such as an output the task did not
// publish, is ""), a quoted string (a backslash takes the next character literally), a number
// as written (-?digits(.digits)?), "true" or "false"; a parenthesised condition, a comparison
// and a negation give "true" or "false". A comparison is numeric when both sides are numbers,
// else it compares the texts bytewise. Where a truth value is needed, a text is true unless it is
// "", "0" or "false". Whitespace between tokens is ignored.
//
// A Condition is parsed once, when the workflow file is loaded, and is immutable afterwards
// (safe to share between threads).
#ifndef TASKHUB_EXPR_CONDITION_H
#define TASKHUB_EXPR_CONDITION_H

#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "expr/ref.h"

namespace taskhub::expr {

class Condition {
public:
    // Parses text. On a syntax error returns nullopt and *err names the 1-based column, what is
    // wrong and what would be right, e.g. "column 15: '=' is not an operator (expected '==')".
    static std::optional<Condition> parse(std::string_view text, std::string* err);

    // The references, in order of appearance (a reference used twice appears twice).
    const std::vector<Ref>& refs() const { return refs_; }
    bool evaluate(const Lookup& lookup) const;

private:
    enum class Op { Literal, Ref, Not, And, Or, Eq, Ne, Lt, Le, Gt, Ge };
    struct Node {
        Op op = Op::Literal;
        std::string text; // Literal: the value
        size_t ref = 0;   // Ref: index into refs_
        size_t lhs = 0;   // Not: the operand; binary operators: both sides (indexes into nodes_)
        size_t rhs = 0;
    };
    class Parser;

    std::string value(size_t node, const Lookup& lookup) const;
    bool truth(size_t node, const Lookup& lookup) const;

    std::vector<Node> nodes_;
    size_t root_ = 0;
    std::vector<Ref> refs_;
};

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_CONDITION_H
