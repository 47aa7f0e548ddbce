// One name table per enum of the domain model, used both to print a value and to parse it back.
// A table lists every enumerator exactly once with the name the store writes and the control
// protocol shows; name() and parse<E>() are its only readers, so a value's spelling lives in
// one place.
#ifndef TASKHUB_MODEL_NAMES_H
#define TASKHUB_MODEL_NAMES_H

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <string>
#include <utility>

namespace taskhub::model {

// Specialised next to each enum: `static constexpr std::array<std::pair<E, std::string_view>, N>
// entries`, in enumerator order.
template <class E>
struct NameTable;

template <class E>
constexpr std::string_view name(E e) {
    for (const auto& [value, text] : NameTable<E>::entries) {
        if (value == e) return text;
    }
    return "?";
}

template <class E>
constexpr std::optional<E> parse(std::string_view text) {
    for (const auto& [value, spelled] : NameTable<E>::entries) {
        if (spelled == text) return value;
    }
    return std::nullopt;
}

// name(e) as a std::string, for building messages.
template <class E>
std::string nameString(E e) {
    return std::string(name(e));
}

// The names of every value, in table order, joined by ", " (for "expected one of ..." errors).
template <class E>
std::string allNames() {
    std::string out;
    for (const auto& [value, text] : NameTable<E>::entries) {
        if (!out.empty()) out += ", ";
        out += text;
    }
    return out;
}

// True when the table lists each enumerator 0..N-1 once, in order: checked by static_assert
// next to each table so that adding an enumerator without a name does not compile.
template <class E>
constexpr bool tableIsComplete() {
    const auto& entries = NameTable<E>::entries;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (static_cast<std::size_t>(entries[i].first) != i) return false;
        for (std::size_t j = i + 1; j < entries.size(); ++j) {
            if (entries[i].second == entries[j].second) return false;
        }
    }
    return true;
}

} // namespace taskhub::model

#endif // TASKHUB_MODEL_NAMES_H
