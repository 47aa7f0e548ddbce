// Opening a Store in the store tests: one that must open, and one that must be refused.
#ifndef TASKHUB_TESTS_UNIT_STORE_STORE_SUPPORT_H
#define TASKHUB_TESTS_UNIT_STORE_STORE_SUPPORT_H

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "store/store.h"

namespace taskhub::store::testing {

// The store in dir, which must open.
inline std::unique_ptr<Store> openStore(const std::filesystem::path& dir) {
    std::string err;
    auto store = Store::open(dir, &err);
    INFO("Store::open: " << err);
    REQUIRE(store);
    return store;
}

// Whether the store in dir opens (it is closed again at once).
inline bool opens(const std::filesystem::path& dir) {
    std::string err;
    return Store::open(dir, &err) != nullptr;
}

// Why opening the store in dir is refused; it must be.
inline std::string openRefusal(const std::filesystem::path& dir) {
    std::string err;
    auto store = Store::open(dir, &err);
    CHECK_FALSE(store);
    return err;
}

} // namespace taskhub::store::testing

#endif // TASKHUB_TESTS_UNIT_STORE_STORE_SUPPORT_H
