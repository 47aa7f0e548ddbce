// Tests compare the domain model's typed values (run and task states, trigger sources, skip
// causes, task kinds) with their names, the text the store writes and clients see:
// CHECK(run.state == "succeeded"). Catch prints such a value by its name. Declared in
// taskhub::model, where argument-dependent lookup finds them; for tests only.
#ifndef TASKHUB_TESTS_MODEL_TEXT_H
#define TASKHUB_TESTS_MODEL_TEXT_H

#include <ostream>
#include <string_view>

#include "model/names.h"

namespace taskhub::model {

template <class E, class = decltype(NameTable<E>::entries)>
bool operator==(E e, std::string_view text) {
    return name(e) == text;
}

template <class E, class = decltype(NameTable<E>::entries)>
std::ostream& operator<<(std::ostream& out, E e) {
    return out << name(e);
}

} // namespace taskhub::model

#endif // TASKHUB_TESTS_MODEL_TEXT_H
