// Accounts for run_as: parsing "user" / "user:group" and resolving them against the password and
// group databases of the machine. Uses only accounts every Debian base system has (root, nobody,
// nogroup, daemon).
#include "common/identity.h"

#include <catch2/catch.hpp>

#include <grp.h>
#include <pwd.h>

#include <algorithm>

using taskhub::AccountSpec;
using taskhub::Identity;
using taskhub::parseAccountSpec;
using taskhub::resolveIdentity;

TEST_CASE("account specs: user or user:group, names or numbers", "[identity]") {
    std::string err;
    auto a = parseAccountSpec("nobody", &err);
    REQUIRE(a);
    CHECK(a->user == "nobody");
    CHECK(a->group.empty());
    auto b = parseAccountSpec("nobody:nogroup", &err);
    REQUIRE(b);
    CHECK(b->user == "nobody");
    CHECK(b->group == "nogroup");
    auto c = parseAccountSpec("65534:65534", &err);
    REQUIRE(c);
    CHECK(c->user == "65534");

    for (const char* bad : {"", ":", "nobody:", ":nogroup", "-rf", "no body", "a:b:c", "x;id", "$(id)"}) {
        INFO(bad);
        CHECK_FALSE(parseAccountSpec(bad, &err));
        CHECK(err.find("expected \"user\" or \"user:group\"") != std::string::npos);
    }
    parseAccountSpec("nobody:", &err);
    CHECK(err == "the group after ':' is empty; expected \"user\" or \"user:group\" (names or numeric ids), e.g. "
                 "\"nobody\" or \"backup:backup\", found \"nobody:\"");
}

TEST_CASE("resolving an account gives uid, gid, groups, home and shell", "[identity]") {
    const passwd* pw = ::getpwnam("nobody");
    const group* nogroup = ::getgrnam("nogroup");
    REQUIRE(pw != nullptr);
    REQUIRE(nogroup != nullptr);
    const uid_t nobody_uid = pw->pw_uid;
    const gid_t nobody_gid = pw->pw_gid;
    const std::string home = pw->pw_dir;
    const gid_t nogroup_gid = nogroup->gr_gid;

    std::string err;
    auto id = resolveIdentity("nobody", &err);
    REQUIRE(id);
    CHECK(id->user == "nobody");
    CHECK(id->uid == nobody_uid);
    CHECK(id->gid == nobody_gid);
    CHECK(id->home == home);
    CHECK_FALSE(id->shell.empty());
    // As initgroups(): the user's own primary group is always among the supplementary groups.
    CHECK(std::count(id->groups.begin(), id->groups.end(), nobody_gid) == 1);

    // An explicit group becomes the primary one; the supplementary list stays initgroups'.
    auto daemon = resolveIdentity("nobody:daemon", &err);
    REQUIRE(daemon);
    CHECK(daemon->gid == ::getgrnam("daemon")->gr_gid);
    CHECK(daemon->group == "daemon");
    CHECK(daemon->groups == id->groups);

    // Numbers resolve to the same account, with its name.
    auto numeric = resolveIdentity(std::to_string(nobody_uid) + ":" + std::to_string(nogroup_gid), &err);
    REQUIRE(numeric);
    CHECK(numeric->user == "nobody");
    CHECK(numeric->group == "nogroup");
    CHECK(numeric->describe() == "nobody:nogroup (uid " + std::to_string(nobody_uid) + ", gid " +
                                     std::to_string(nogroup_gid) + ")");

    auto root = resolveIdentity("root", &err);
    REQUIRE(root);
    CHECK(root->uid == 0);
    CHECK(root->gid == 0);
}

TEST_CASE("unknown users and groups are errors that name them", "[identity]") {
    std::string err;
    CHECK_FALSE(resolveIdentity("no-such-user-th", &err));
    CHECK(err == "no user 'no-such-user-th' in the password database");
    CHECK_FALSE(resolveIdentity("nobody:no-such-group-th", &err));
    CHECK(err == "no group 'no-such-group-th' in the group database");
    CHECK_FALSE(resolveIdentity("4000000000", &err));
    CHECK(err == "no user with uid 4000000000 in the password database");
    CHECK_FALSE(resolveIdentity("nobody:x y", &err));
    CHECK(err.find("'x y' is not a group name") == 0);
}
