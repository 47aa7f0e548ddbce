// Where in POSIX shell text each ${...} template of a shell-text parameter sits, and how a value
// is escaped for that place (context-aware escaping, as Go's html/template does for HTML).
//
// A plugin declares which of its parameters are shell command text (th_plugin_api.shell_params,
// e.g. the shell plugin's "command"). For those, the host does not paste a template's value into
// the text: it finds the shell context of each reference when the workflow file is loaded, and
// when the task starts inserts the value escaped for that context, so that the shell receives
// exactly the value's bytes as literal data and never as code:
//
//   bare word      rm ${params.file}      ->  rm 'a;b'          (th_shell_quote)
//   '...'          rm '${params.file}'    ->  rm ''\''a;b'\'''  (close, quoted value, reopen)
//   "..."          rm "${params.file}"    ->  rm ""'a;b'""      (close, quoted value, reopen)
//
// Every other context is refused at load time (isSafe() false), because there the shell would
// read a value as code, or not as one literal word, whatever the escaping: inside $(...) or
// backticks, a here-document (body or delimiter), an arithmetic expansion $((...)), $[...] or
// command ((...)), a parameter expansion ${...} (a variable name or its word), a comment, right
// after a backslash, inside $'...', inside bash's [[ ... ]] (operands of -eq and friends are
// evaluated as arithmetic), an array subscript of an assignment, and an argument of eval, let or
// trap (which run their arguments as code).
//
// The scanner follows the grammar of dash and bash closely enough for these decisions; it never
// runs anything. Pure; no I/O.
#ifndef TASKHUB_EXPR_SHELL_CONTEXT_H
#define TASKHUB_EXPR_SHELL_CONTEXT_H

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::expr {

class Template;

enum class ShellContext {
    // Safe: the value can be escaped so the shell receives it literally.
    Bare,
    // A bare word in which the author wrote a ~, [ or { before the reference: a value of plain
    // characters could join a tilde, glob or brace expansion there, so it is always quoted.
    BareInPattern,
    SingleQuoted,
    DoubleQuoted,
    // Refused.
    CommandSubstitution,
    Backquote,
    HereDocument,
    Arithmetic,
    ParameterExpansion,
    Comment,
    AfterBackslash,
    AnsiCQuoted,
    DoubleBracket,
    ArraySubscript,
    CodeArgument,
};

bool isSafe(ShellContext c);

// Where the reference sits, for messages: "inside a command substitution $(...)".
const char* describe(ShellContext c);

// The contexts of t's references, in the order of t.refs(), when t is shell command text.
std::vector<ShellContext> shellContexts(const Template& t);

// The load-time message for a reference written as `shown` ("${params.file}") in an unsafe
// context: where it is, why that is refused, and what to write instead.
std::string refusal(ShellContext c, std::string_view shown, const std::string& env_hint);

// value escaped for a safe context, or nullopt when the value holds a NUL byte (no shell word
// can carry one). Precondition: isSafe(c).
std::optional<std::string> escapeForShell(ShellContext c, std::string_view value);

} // namespace taskhub::expr

#endif // TASKHUB_EXPR_SHELL_CONTEXT_H
