// Private to the expr module: parses the reference grammar shared by templates and conditions,
//   params.NAME path | tasks.ID.outputs.NAME path | tasks.ID.state | item path | index
//   path := ( '.' KEY | '[' N ']' )* ( '.length' )?
// NAME and KEY are [A-Za-z_][A-Za-z0-9_]* (KEY "length" is the length step), ID is
// [A-Za-z0-9_-]+ (a task id), N a decimal of at most 18 digits.
#ifndef TASKHUB_EXPR_REF_PARSER_H
#define TASKHUB_EXPR_REF_PARSER_H

#include <string>
#include <string_view>

#include "expr/ref.h"

namespace taskhub::expr::detail {

struct RefParse {
    bool ok = false;
    Ref ref;
    size_t end = 0;         // ok: the index just after the reference
    size_t error_pos = 0;   // !ok: index of the offending character (text.size() at the end)
    std::string error;      // !ok: what is wrong and what would be right, without the column
};

// Parses a reference starting at text[pos]. `expected` describes the accepted forms for
// messages, e.g. "${params.NAME} or ${tasks.ID.outputs.NAME}". TaskState refs are accepted only
// when allow_state is true.
RefParse parseRef(std::string_view text, size_t pos, bool allow_state, const std::string& expected);

// "column N: message" for a 0-based index.
std::string at(size_t index, const std::string& message);

// How a character (or the end) is quoted in messages: "'x'" or "the end of the text".
std::string describe(std::string_view text, size_t index, const char* end_name);

} // namespace taskhub::expr::detail

#endif // TASKHUB_EXPR_REF_PARSER_H
