// Helpers shared by the unit tests.
#ifndef TASKHUB_TESTS_UNIT_TEST_SUPPORT_H
#define TASKHUB_TESTS_UNIT_TEST_SUPPORT_H

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace taskhub::testing {

// A fresh directory under /tmp, removed with everything in it when the object goes.
class TempDir {
public:
    explicit TempDir(const std::string& prefix = "th-test") {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        path = mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    // Writes text to path/name (creating directories) and returns the full path.
    std::filesystem::path write(const std::string& name, const std::string& text) const {
        auto p = path / name;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << text;
        return p;
    }

    std::filesystem::path path;
};

} // namespace taskhub::testing

#endif // TASKHUB_TESTS_UNIT_TEST_SUPPORT_H
