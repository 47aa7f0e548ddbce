// Resolving dropped files beneath a watch root: every symlink on the way (relative, absolute,
// to a parent), "..", absolute paths, hard links, fifos, devices and directories are refused, the
// same by openat2 and by the O_NOFOLLOW walk; what is resolved stays bound to the directory that
// was checked even when a path component is swapped with a symlink afterwards.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.h"
#include "triggers/beneath.h"

namespace {

using namespace taskhub::triggers;
using taskhub::testing::TempDir;
namespace fs = std::filesystem;

struct Box {
    TempDir tmp;
    fs::path root = tmp.path / "box";
    fs::path outside = tmp.path / "secret";
    Fd root_fd;

    Box() {
        fs::create_directories(root / "a" / "b");
        fs::create_directories(outside);
        write(outside / "x.csv", "secret");
        root_fd = Fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        REQUIRE(root_fd);
    }
    static void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

    Refusal file(const std::string& rel, Resolver how, BeneathFile* out = nullptr, std::string* why = nullptr) {
        BeneathFile f;
        std::string w;
        const Refusal r = openFileBeneath(root_fd.get(), rel, how, out ? out : &f, why ? why : &w);
        INFO(rel << ": " << (why ? *why : w));
        if (r == Refusal::None) {
            CHECK((why ? *why : w).empty());
        } else {
            CHECK_FALSE((why ? *why : w).empty()); // a refusal always says why
        }
        return r;
    }
};

// Each case runs with openat2, with the walk, and with Auto (openat2 unless the kernel lacks it).
#define ANY_RESOLVER GENERATE(Resolver::Openat2, Resolver::Walk, Resolver::Auto)

TEST_CASE("a regular file beneath the root resolves, with its parent directory descriptor") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    Box::write(box.root / "a" / "b" / "x.csv", "data");
    BeneathFile f;
    REQUIRE(box.file("a/b/x.csv", how, &f) == Refusal::None);
    struct stat st {};
    REQUIRE(::stat((box.root / "a" / "b" / "x.csv").c_str(), &st) == 0);
    CHECK(sameFile(f.st, st));
    CHECK(f.leaf == "x.csv");
    CHECK(S_ISREG(f.st.st_mode));
    struct stat dir_st {}, b_st {};
    REQUIRE(::fstat(f.dir.get(), &dir_st) == 0);
    REQUIRE(::stat((box.root / "a" / "b").c_str(), &b_st) == 0);
    CHECK(sameFile(dir_st, b_st));
    CHECK(box.file("./a//b/x.csv", how) == Refusal::None); // "." and empty components are harmless

    Box::write(box.root / "top.csv", "t");
    BeneathFile top;
    REQUIRE(box.file("top.csv", how, &top) == Refusal::None);
    CHECK(top.leaf == "top.csv");
}

TEST_CASE("a symbolic link anywhere on the path is refused") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    Box::write(box.root / "a" / "b" / "x.csv", "data");
    fs::create_directory_symlink(box.outside, box.root / "abs");    // absolute, out of the box
    fs::create_directory_symlink("a", box.root / "inside");         // relative, staying inside
    fs::create_directory_symlink("../secret", box.root / "up");     // relative, out of the box
    fs::create_symlink(box.outside / "x.csv", box.root / "leaf.csv"); // the file itself
    fs::create_directory_symlink("b", box.root / "a" / "deep");      // a deeper component

    std::string why;
    CHECK(box.file("abs/x.csv", how, nullptr, &why) == Refusal::Symlink);
    CHECK(why.find("abs") != std::string::npos);
    CHECK(box.file("inside/b/x.csv", how) == Refusal::Symlink);
    CHECK(box.file("up/x.csv", how) == Refusal::Symlink);
    CHECK(box.file("leaf.csv", how, nullptr, &why) == Refusal::Symlink);
    CHECK(why == "leaf.csv is a symbolic link");
    CHECK(box.file("a/deep/x.csv", how, nullptr, &why) == Refusal::Symlink);
    CHECK(why.find("a/deep") != std::string::npos);

    Fd dir;
    CHECK(openDirBeneath(box.root_fd.get(), "abs", how, &dir, &why) == Refusal::Symlink);
    CHECK_FALSE(dir);
}

TEST_CASE("'..' and absolute paths are refused before anything is opened") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    Box::write(box.root / "x.csv", "data");
    CHECK(box.file("../secret/x.csv", how) == Refusal::Escapes);
    CHECK(box.file("a/../x.csv", how) == Refusal::Escapes);
    CHECK(box.file((box.outside / "x.csv").string(), how) == Refusal::Escapes);
    Fd dir;
    std::string why;
    CHECK(openDirBeneath(box.root_fd.get(), "..", how, &dir, &why) == Refusal::Escapes);
    CHECK(why.find("..") != std::string::npos);
}

TEST_CASE("a file with more than one hard link is refused") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    REQUIRE(::link((box.outside / "x.csv").c_str(), (box.root / "x.csv").c_str()) == 0);
    std::string why;
    CHECK(box.file("x.csv", how, nullptr, &why) == Refusal::HardLinked);
    CHECK(why.find("2 hard links") != std::string::npos);
    REQUIRE(::unlink((box.outside / "x.csv").c_str()) == 0); // back to one link: fine again
    CHECK(box.file("x.csv", how) == Refusal::None);
}

TEST_CASE("fifos, directories and devices are not regular files, and a fifo is never opened") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    REQUIRE(::mkfifo((box.root / "p.csv").c_str(), 0666) == 0);
    std::string why;
    CHECK(box.file("p.csv", how, nullptr, &why) == Refusal::NotRegular); // would block if opened
    CHECK(why == "p.csv is a fifo, not a regular file");
    CHECK(box.file("a", how) == Refusal::NotRegular);
    if (::mknod((box.root / "null.csv").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) {
        CHECK(box.file("null.csv", how, nullptr, &why) == Refusal::NotRegular);
        CHECK(why == "null.csv is a character device, not a regular file");
    } else {
        WARN("mknod needs CAP_MKNOD; the device case is covered by the system tests' fifo and symlink cases");
    }
    Box::write(box.root / "f", "x");
    CHECK(box.file("f/x.csv", how) == Refusal::NotRegular); // a file where a directory should be
    CHECK(box.file("a/", how) == Refusal::NotRegular);
}

TEST_CASE("a missing file or directory is Missing") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    CHECK(box.file("nope.csv", how) == Refusal::Missing);
    CHECK(box.file("nope/x.csv", how) == Refusal::Missing);
    CHECK(box.file("a/nope/x.csv", how) == Refusal::Missing);
}

TEST_CASE("a swapped file shows as another inode; a swapped directory cannot redirect what was resolved") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    Box::write(box.root / "a" / "x.csv", "first");
    BeneathFile first;
    REQUIRE(box.file("a/x.csv", how, &first) == Refusal::None);

    // Replaced by another file: the inode differs.
    Box::write(box.root / "a" / "y.tmp", "second");
    REQUIRE(::rename((box.root / "a" / "y.tmp").c_str(), (box.root / "a" / "x.csv").c_str()) == 0);
    BeneathFile second;
    REQUIRE(box.file("a/x.csv", how, &second) == Refusal::None);
    CHECK_FALSE(sameFile(first.st, second.st));

    // The directory "a" swapped with a symlink to the secret directory after resolution: the
    // path now leads outside and is refused, and the descriptor still names the original "a", so
    // an unlink through it cannot reach the secret file.
    fs::create_directory_symlink(box.outside, box.root / "evil");
    REQUIRE(::renameat2(AT_FDCWD, (box.root / "a").c_str(), AT_FDCWD, (box.root / "evil").c_str(),
                        RENAME_EXCHANGE) == 0);
    CHECK(box.file("a/x.csv", how) == Refusal::Symlink);
    REQUIRE(::unlinkat(second.dir.get(), second.leaf.c_str(), 0) == 0);
    CHECK(fs::exists(box.outside / "x.csv"));
    CHECK_FALSE(fs::exists(box.root / "evil" / "x.csv")); // the original "a", now named "evil"
}

TEST_CASE("openDirBeneath: the root itself and directories below it") {
    const Resolver how = ANY_RESOLVER;
    Box box;
    Fd dir;
    std::string why;
    REQUIRE(openDirBeneath(box.root_fd.get(), "", how, &dir, &why) == Refusal::None);
    struct stat a {}, b {};
    REQUIRE(::fstat(dir.get(), &a) == 0);
    REQUIRE(::fstat(box.root_fd.get(), &b) == 0);
    CHECK(sameFile(a, b));
    REQUIRE(openDirBeneath(box.root_fd.get(), "a/b", how, &dir, &why) == Refusal::None);
    CHECK(openDirBeneath(box.root_fd.get(), "a/none", how, &dir, &why) == Refusal::Missing);
}

TEST_CASE("refusal names are stable") {
    CHECK(std::string(refusalName(Refusal::Symlink)) == "symlink");
    CHECK(std::string(refusalName(Refusal::HardLinked)) == "hard-linked");
    CHECK(std::string(refusalName(Refusal::NotRegular)) == "not-regular");
    CHECK(std::string(refusalName(Refusal::Replaced)) == "replaced");
    CHECK(std::string(refusalName(Refusal::Escapes)) == "escapes");
}

} // namespace
