// Guards in front of the TOML parser: how deeply a TOML text nests, found without parsing it,
// and whether it is UTF-8 (below).
//
// toml11 parses nested arrays and inline tables by recursion, one set of stack frames per
// level, and frees the parsed value by recursion too: a 20 KB file of `a = [[[[...]]]]`, 10,000
// deep, overflows the stack and kills the process. Every TOML text taskhubd reads (taskhub.toml,
// workflow files) is therefore scanned with firstTooDeep() before toml11 sees it, and refused
// when it nests deeper than kMaxTomlNesting. The scan is a small lexer over the bytes: it
// iterates (never recurses), skips comments and strings (basic, literal and their multi-line
// forms), and counts what makes the parsed value deeper:
//   - each open array `[` or inline table `{` of a value;
//   - each further part of a dotted key (`a.b.c = 1` is two tables deep), on a key line or
//     inside an inline table;
//   - the parts of the current table header (`[a.b]`, `[[a.b]]`), which the keys below it
//     nest in. A header's brackets are not nesting.
// Brackets inside strings and comments do not count. The count errs on the high side where
// the text is not valid TOML (toml11 refuses such a text anyway).
#ifndef TASKHUB_CONFIG_TOML_NESTING_H
#define TASKHUB_CONFIG_TOML_NESTING_H

#include <cstddef>
#include <optional>
#include <string_view>

namespace taskhub::config {

// The deepest nesting a TOML text may have. Real workflow files nest 3 or 4 levels deep; 64
// leaves room for any generated file and keeps toml11's recursion far from the stack's end
// (also on a thread's stack).
inline constexpr size_t kMaxTomlNesting = 64;

struct TooDeep {
    size_t line = 0;  // 1-based line where the nesting first exceeds the limit
    size_t depth = 0; // the depth reached there (limit + 1)
};

// Where text first nests deeper than max_depth, or std::nullopt when it never does.
std::optional<TooDeep> firstTooDeep(std::string_view text, size_t max_depth = kMaxTomlNesting);

// The 1-based line of the first byte of text that is not well-formed UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF are not), or std::nullopt when all of it is. A TOML
// text must be UTF-8, and toml11 3.7.1 reads past the end of its buffer on some invalid bytes in a
// literal string (found by tests/fuzz/workflow_fuzz), so such a text is refused before it too.
std::optional<size_t> firstInvalidUtf8(std::string_view text);

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_TOML_NESTING_H
