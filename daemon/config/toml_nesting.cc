#include "config/toml_nesting.h"

#include <vector>

namespace taskhub::config {

namespace {

// One open array or inline table of a value.
struct Frame {
    bool table = false; // an inline table (else an array)
    bool key = true;    // inline table: before the '=' of the current entry
    size_t dots = 0;    // inline table: the dots of the current entry's key
};

class Scanner {
public:
    Scanner(std::string_view text, size_t max) : s_(text), max_(max) {}

    std::optional<TooDeep> run() {
        while (i_ < s_.size()) {
            const char c = s_[i_];
            Frame* f = frames_.empty() ? nullptr : &frames_.back();
            if (c == '#') {
                while (i_ < s_.size() && s_[i_] != '\n') ++i_;
            } else if (c == '"' || c == '\'') {
                skipString(c);
            } else if (c == '\n') {
                ++line_;
                ++i_;
                if (f == nullptr) { // a key/value line ends
                    depth_ -= top_dots_;
                    top_dots_ = 0;
                    top_value_ = false;
                }
            } else if (c == '[' && f == nullptr && !top_value_) {
                if (header()) return TooDeep{line_, depth_};
            } else if (c == '[' || c == '{') {
                frames_.push_back({c == '{', true, 0});
                ++i_;
                if (++depth_ > max_) return TooDeep{line_, depth_};
            } else if (c == ']' || c == '}') {
                if (f != nullptr) {
                    depth_ -= 1 + f->dots;
                    frames_.pop_back();
                }
                ++i_;
            } else if (c == '=') {
                if (f == nullptr) top_value_ = true;
                else if (f->table) f->key = false;
                ++i_;
            } else if (c == ',') {
                if (f != nullptr && f->table) {
                    depth_ -= f->dots;
                    f->dots = 0;
                    f->key = true;
                }
                ++i_;
            } else if (c == '.' && (f == nullptr ? !top_value_ : f->table && f->key)) {
                // A dotted key's separator: one table deeper.
                if (f == nullptr) ++top_dots_;
                else ++f->dots;
                ++i_;
                if (++depth_ > max_) return TooDeep{line_, depth_};
            } else {
                ++i_;
            }
        }
        return std::nullopt;
    }

private:
    // At a table header's '[': reads it and makes its parts the depth the keys below it start
    // at. True when that is too deep.
    bool header() {
        depth_ -= header_;
        const bool array = i_ + 1 < s_.size() && s_[i_ + 1] == '[';
        i_ += array ? 2 : 1;
        size_t parts = array ? 2 : 1; // [[a]]: an array of tables, each a table
        while (i_ < s_.size() && s_[i_] != '\n' && s_[i_] != ']') {
            const char c = s_[i_];
            if (c == '"' || c == '\'') {
                skipString(c);
                continue;
            }
            if (c == '.') ++parts;
            ++i_;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
            ++i_;
            if (array && i_ < s_.size() && s_[i_] == ']') ++i_;
        }
        header_ = parts;
        depth_ += header_;
        return depth_ > max_;
    }

    // At an opening quote: skips the string, its escapes (basic strings) and, for a multi-line
    // string, its newlines (counted). An unterminated single-line string ends at the newline.
    void skipString(char quote) {
        const bool basic = quote == '"';
        const bool multi = i_ + 2 < s_.size() && s_[i_ + 1] == quote && s_[i_ + 2] == quote;
        i_ += multi ? 3 : 1;
        while (i_ < s_.size()) {
            const char c = s_[i_];
            if (c == '\n') {
                if (!multi) return;
                ++line_;
            } else if (c == '\\' && basic) {
                // Skips the escaped character, unless it is a newline (counted above next time).
                if (i_ + 1 < s_.size() && s_[i_ + 1] != '\n') ++i_;
            } else if (c == quote) {
                if (!multi) {
                    ++i_;
                    return;
                }
                if (i_ + 2 < s_.size() && s_[i_ + 1] == quote && s_[i_ + 2] == quote) {
                    i_ += 3;
                    // Up to two more quotes right before the closing three belong to the content.
                    for (int extra = 0; extra < 2 && i_ < s_.size() && s_[i_] == quote; ++extra) ++i_;
                    return;
                }
            }
            ++i_;
        }
    }

    std::string_view s_;
    size_t max_;
    size_t i_ = 0;
    size_t line_ = 1;
    size_t depth_ = 0;    // header_ + top_dots_ + each frame's 1 + dots
    size_t header_ = 0;   // parts of the current table header
    size_t top_dots_ = 0; // dots of the key on the current key/value line
    bool top_value_ = false; // the current key/value line is past its '='
    std::vector<Frame> frames_;
};

} // namespace

std::optional<TooDeep> firstTooDeep(std::string_view text, size_t max_depth) {
    return Scanner(text, max_depth).run();
}

std::optional<size_t> firstInvalidUtf8(std::string_view text) {
    size_t line = 1;
    const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
    for (size_t i = 0; i < text.size();) {
        const unsigned c = byte(i);
        if (c < 0x80) {
            if (c == '\n') ++line;
            ++i;
            continue;
        }
        size_t len = 0;
        unsigned cp = 0, min = 0;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return line;
        if (i + len > text.size()) return line;
        for (size_t k = 1; k < len; ++k) {
            if ((byte(i + k) & 0xC0) != 0x80) return line;
            cp = (cp << 6) | (byte(i + k) & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return line;
        i += len;
    }
    return std::nullopt;
}

} // namespace taskhub::config
