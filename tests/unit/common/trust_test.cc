// common/trust.h: what taskhubd trusts, and every directory above its real location, is owned by
// root or the daemon's user and written by nobody else; the only exception is a root-owned sticky
// directory above (never as) the object's own directory. Checked on descriptors, symbolic links
// resolved, hard links refused.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/trust.h"

using namespace taskhub;
using trust::Kind;

namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;
const trust::Owners kRoot{0};

struct stat statOf(mode_t type_and_mode, uid_t uid, nlink_t links = 1) {
    struct stat st {};
    st.st_mode = type_and_mode;
    st.st_uid = uid;
    st.st_nlink = links;
    return st;
}

// A private directory under /tmp (root-owned, sticky, 1777), removed at the end.
struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/taskhub-trust-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path file(const std::string& rel, mode_t mode = 0644) const {
        const fs::path p = path / rel;
        std::ofstream(p) << "x = 1\n";
        ::chmod(p.c_str(), mode);
        return p;
    }
    fs::path dir(const std::string& rel, mode_t mode = 0755) const {
        const fs::path p = path / rel;
        fs::create_directories(p);
        ::chmod(p.c_str(), mode);
        return p;
    }
};

std::string refusal(const fs::path& p, Kind kind, trust::Owners owners = kRoot) {
    std::string why;
    auto opened = trust::openTrusted(p, kind, owners, &why);
    if (opened) return "";
    REQUIRE_FALSE(why.empty());
    return why;
}

bool runningAsRoot() { return ::geteuid() == 0; }

} // namespace

TEST_CASE("the trusted object: owner, writers, links and type", "[trust]") {
    std::string why;
    CHECK(trust::trustedObject("/f", statOf(S_IFREG | 0644, 0), Kind::RegularFile, kRoot, &why));
    CHECK(trust::trustedObject("/d", statOf(S_IFDIR | 0755, 0), Kind::Directory, kRoot, &why));

    REQUIRE_FALSE(trust::trustedObject("/f", statOf(S_IFREG | 0644, kNobody), Kind::RegularFile, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("/f is owned by uid 65534") && Catch::Contains("make it owned by root"));
    // Unprivileged: the daemon's own user passes, others still do not.
    CHECK(trust::trustedObject("/f", statOf(S_IFREG | 0644, 1000), Kind::RegularFile, trust::Owners{1000}, &why));
    REQUIRE_FALSE(trust::trustedObject("/f", statOf(S_IFREG | 0644, 1001), Kind::RegularFile, trust::Owners{1000}, &why));
    CHECK_THAT(why, Catch::Contains("root or the daemon's user (uid 1000"));

    REQUIRE_FALSE(trust::trustedObject("/w", statOf(S_IFDIR | 0777, 0), Kind::Directory, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("/w is writable by group and others (mode 0777): make it 0755"));
    REQUIRE_FALSE(trust::trustedObject("/f", statOf(S_IFREG | 0664, 0), Kind::RegularFile, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("writable by group (mode 0664): make it 0644"));
    // Sticky does not excuse the object itself.
    REQUIRE_FALSE(trust::trustedObject("/d", statOf(S_IFDIR | 01777, 0), Kind::Directory, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("mode 1777): make it 0755"));

    REQUIRE_FALSE(trust::trustedObject("/f", statOf(S_IFREG | 0644, 0, 2), Kind::RegularFile, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("/f has 2 hard links"));

    REQUIRE_FALSE(trust::trustedObject("/f", statOf(S_IFIFO | 0644, 0), Kind::RegularFile, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("/f is a FIFO, expected a regular file"));
    REQUIRE_FALSE(trust::trustedObject("/d", statOf(S_IFREG | 0755, 0), Kind::Directory, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("expected a directory"));
}

TEST_CASE("the directories above: sticky root directories only above the object's own", "[trust]") {
    std::string why;
    CHECK(trust::trustedDirectory("/etc", statOf(S_IFDIR | 0755, 0), false, kRoot, &why));
    CHECK(trust::trustedDirectory("/tmp", statOf(S_IFDIR | 01777, 0), false, kRoot, &why));

    REQUIRE_FALSE(trust::trustedDirectory("/tmp", statOf(S_IFDIR | 01777, 0), true, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("own directory may not be writable by others, sticky or not"));
    REQUIRE_FALSE(trust::trustedDirectory("/srv/box", statOf(S_IFDIR | 01777, 1000), false, trust::Owners{1000}, &why));
    CHECK_THAT(why, Catch::Contains("only a root-owned sticky directory"));
    REQUIRE_FALSE(trust::trustedDirectory("/srv", statOf(S_IFDIR | 0777, 0), false, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("directory /srv is writable by group and others (mode 0777): make it 0755"));
    REQUIRE_FALSE(trust::trustedDirectory("/srv", statOf(S_IFDIR | 0775, 0), false, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("writable by group (mode 0775)"));
    REQUIRE_FALSE(trust::trustedDirectory("/home/u", statOf(S_IFDIR | 0755, kNobody), false, kRoot, &why));
    CHECK_THAT(why, Catch::Contains("directory /home/u is owned by uid 65534"));
    CHECK_FALSE(trust::trustedSymlink("/l", statOf(S_IFLNK | 0777, kNobody), kRoot, &why));
    CHECK(trust::trustedSymlink("/l", statOf(S_IFLNK | 0777, 0), kRoot, &why));
}

TEST_CASE("a file in a private directory under /tmp is trusted and read from its descriptor", "[trust]") {
    TempDir t;
    const auto f = t.file("a.toml");
    std::string why;
    auto opened = trust::openTrusted(f, Kind::RegularFile, trust::processOwners(), &why);
    REQUIRE(opened);
    CHECK(opened->real_path == f);
    CHECK(S_ISREG(opened->st.st_mode));
    CHECK((::fcntl(opened->fd.get(), F_GETFL) & O_NONBLOCK) == 0);
    CHECK((::fcntl(opened->fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    std::string text, err;
    REQUIRE(trust::readAll(opened->fd.get(), &text, &err));
    CHECK(text == "x = 1\n");
    auto dir = trust::openTrusted(t.path, Kind::Directory, trust::processOwners(), &why);
    REQUIRE(dir);
}

TEST_CASE("group or other write permission anywhere on the way refuses the file", "[trust]") {
    TempDir t;
    t.dir("a/b");
    const auto f = t.file("a/b/w.toml");
    CHECK(refusal(f, Kind::RegularFile, trust::processOwners()).empty());

    ::chmod(f.c_str(), 0666);
    CHECK_THAT(refusal(f, Kind::RegularFile, trust::processOwners()),
               Catch::Contains(f.string() + " is writable by group and others (mode 0666)"));
    ::chmod(f.c_str(), 0644);

    ::chmod((t.path / "a/b").c_str(), 0775);
    CHECK_THAT(refusal(f, Kind::RegularFile, trust::processOwners()),
               Catch::Contains("directory " + (t.path / "a/b").string() + " is writable by group (mode 0775)"));
    // The object's own directory: sticky does not help.
    ::chmod((t.path / "a/b").c_str(), 01777);
    CHECK_THAT(refusal(f, Kind::RegularFile, trust::processOwners()), Catch::Contains("sticky or not"));
    ::chmod((t.path / "a/b").c_str(), 0755);

    ::chmod((t.path / "a").c_str(), 0757);
    CHECK_THAT(refusal(f, Kind::RegularFile, trust::processOwners()),
               Catch::Contains("directory " + (t.path / "a").string() + " is writable by others (mode 0757)"));
    // Above the object's directory, a root-owned sticky one (like /tmp) is accepted...
    ::chmod((t.path / "a").c_str(), 01777);
    if (runningAsRoot()) CHECK(refusal(f, Kind::RegularFile, trust::processOwners()).empty());
    // ...but the directory itself as the trusted object never.
    CHECK_THAT(refusal(t.path / "a", Kind::Directory, trust::processOwners()),
               Catch::Contains("(mode 1777): make it 0755"));
}

TEST_CASE("ownership by another user anywhere on the way refuses the file", "[trust]") {
    if (!runningAsRoot()) {
        WARN("skipped: needs root to give files away");
        return;
    }
    TempDir t;
    t.dir("u");
    const auto f = t.file("u/w.toml");
    REQUIRE(::chown(f.c_str(), kNobody, kNobody) == 0);
    CHECK_THAT(refusal(f, Kind::RegularFile), Catch::Contains(f.string() + " is owned by uid 65534"));
    REQUIRE(::chown(f.c_str(), 0, 0) == 0);
    REQUIRE(::chown((t.path / "u").c_str(), kNobody, kNobody) == 0);
    CHECK_THAT(refusal(f, Kind::RegularFile),
               Catch::Contains("directory " + (t.path / "u").string() + " is owned by uid 65534"));
    // The same file passes for a daemon running as that user.
    CHECK(refusal(f, Kind::RegularFile, trust::Owners{kNobody}).empty());
}

TEST_CASE("a symbolic link counts for its target: the target's directories are checked", "[trust]") {
    if (!runningAsRoot()) {
        WARN("skipped: needs root to give files away");
        return;
    }
    TempDir t;
    t.dir("trusted");
    t.dir("user");
    const auto target = t.file("user/evil.toml");
    REQUIRE(::chown((t.path / "user").c_str(), kNobody, kNobody) == 0);
    const auto link = t.path / "trusted" / "w.toml";
    fs::create_symlink(target, link);
    CHECK_THAT(refusal(link, Kind::RegularFile),
               Catch::Contains("directory " + (t.path / "user").string() + " is owned by uid 65534"));

    // A target in a directory that passes is accepted, and real_path says where it is.
    REQUIRE(::chown((t.path / "user").c_str(), 0, 0) == 0);
    std::string why;
    auto opened = trust::openTrusted(link, Kind::RegularFile, kRoot, &why);
    REQUIRE(opened);
    CHECK(opened->real_path == target);

    // A relative link resolves against the link's directory, ".." included.
    const auto rel = t.path / "trusted" / "rel.toml";
    fs::create_symlink("../user/evil.toml", rel);
    REQUIRE(trust::openTrusted(rel, Kind::RegularFile, kRoot, &why));

    // A link owned by someone else is not followed.
    const auto theirs = t.path / "trusted" / "theirs.toml";
    fs::create_symlink(target, theirs);
    REQUIRE(::lchown(theirs.c_str(), kNobody, kNobody) == 0);
    CHECK_THAT(refusal(theirs, Kind::RegularFile), Catch::Contains("symbolic link " + theirs.string() + " is owned by uid 65534"));

    // A link in a directory on the way that others own: that directory is refused.
    t.dir("owned");
    fs::create_symlink(t.path / "trusted", t.path / "owned" / "hop");
    REQUIRE(::chown((t.path / "owned").c_str(), kNobody, kNobody) == 0);
    CHECK_THAT(refusal(t.path / "owned" / "hop" / "w.toml", Kind::RegularFile),
               Catch::Contains("directory " + (t.path / "owned").string() + " is owned by uid 65534"));
}

TEST_CASE("hard-linked files, other file types and loops are refused", "[trust]") {
    TempDir t;
    const auto f = t.file("one.toml");
    fs::create_hard_link(f, t.path / "two.toml");
    CHECK_THAT(refusal(f, Kind::RegularFile, trust::processOwners()), Catch::Contains("has 2 hard links"));

    const auto fifo = t.path / "fifo.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    CHECK_THAT(refusal(fifo, Kind::RegularFile, trust::processOwners()),
               Catch::Contains("is a FIFO, expected a regular file"));
    CHECK_THAT(refusal(t.path / "one.toml" / "x", Kind::RegularFile, trust::processOwners()),
               Catch::Contains("not a directory"));
    CHECK_THAT(refusal(t.dir("sub"), Kind::RegularFile, trust::processOwners()),
               Catch::Contains("is a directory, expected a regular file"));
    // A file directly in /tmp: its own directory is writable by others, sticky or not.
    char in_tmp[] = "/tmp/taskhub-trust-XXXXXX.toml";
    const int fd = ::mkstemps(in_tmp, 5);
    REQUIRE(fd >= 0);
    ::close(fd);
    CHECK_THAT(refusal(in_tmp, Kind::RegularFile, trust::processOwners()),
               Catch::Contains("directory /tmp is writable by group and others (mode 1777)") &&
                   Catch::Contains("sticky or not"));
    ::unlink(in_tmp);

    fs::create_symlink(t.path / "loop2", t.path / "loop1");
    fs::create_symlink(t.path / "loop1", t.path / "loop2");
    CHECK_THAT(refusal(t.path / "loop1", Kind::RegularFile, trust::processOwners()),
               Catch::Contains("too many levels of symbolic links"));
    CHECK_THAT(refusal(t.path / "missing.toml", Kind::RegularFile, trust::processOwners()),
               Catch::Contains("No such file or directory"));
}
