// Which command lines the shell executor runs without /bin/sh, and where it looks for them.
#include "../../../plugins/shell/direct_exec.h"

#include <catch2/catch.hpp>

using taskhub::plugins::shell::programCandidates;
using taskhub::plugins::shell::simpleCommandWords;
using Words = std::vector<std::string>;

TEST_CASE("direct exec: a command of plain words is split at blanks", "[shell][direct]") {
    CHECK(simpleCommandWords("true") == Words{"true"});
    CHECK(simpleCommandWords("  /usr/bin/rsync\t-a  /src/ host:/dst ") ==
          Words{"/usr/bin/rsync", "-a", "/src/", "host:/dst"});
    CHECK(simpleCommandWords("dd if=/dev/zero of=out bs=1M count=1") ==
          Words{"dd", "if=/dev/zero", "of=out", "bs=1M", "count=1"});
    CHECK(simpleCommandWords("backup.sh --level=2 user@host,x +5 50%") ==
          Words{"backup.sh", "--level=2", "user@host,x", "+5", "50%"});
}

TEST_CASE("direct exec: any shell syntax goes through the shell", "[shell][direct]") {
    for (const char* command :
         {"echo $HOME", "ls *.csv", "a; b", "a && b", "a | b", "a > out", "a < in", "a &",
          "'quoted'", "\"quoted\"", "a\\ b", "(a)", "{ a; }", "~/bin/x", "x # comment",
          "a\nb", "`a`", "a?", "[a]", "!a", "a^b", "caf\xc3\xa9", "", "   ", "\t"}) {
        INFO(command);
        CHECK_FALSE(simpleCommandWords(command));
    }
}

TEST_CASE("direct exec: assignments, keywords and built-ins go through the shell",
          "[shell][direct]") {
    for (const char* command :
         {"FOO=1 env", "cd /tmp", "exit 3", "echo -e x", "printf x", "pwd", "kill -l", "test -f x",
          ". ./env.sh", ": x", "exec sleep 1", "umask 077", "ulimit -n", "wait", "read x",
          "if", "for", "while", "time sleep 1", "command -v ls", "type ls", "source x",
          "export A", "set -e", "trap x", "true --help", "false --version", "true x"}) {
        INFO(command);
        CHECK_FALSE(simpleCommandWords(command));
    }
    // Their standalone programs behave exactly like the built-ins when called without arguments.
    CHECK(simpleCommandWords("true") == Words{"true"});
    CHECK(simpleCommandWords(" false ") == Words{"false"});
    // A word that only contains a built-in's name is a program like any other.
    CHECK(simpleCommandWords("echoer x") == Words{"echoer", "x"});
    CHECK(simpleCommandWords("/bin/echo -e x") == Words{"/bin/echo", "-e", "x"});
}

TEST_CASE("direct exec: the program is looked up along PATH, like the shell does",
          "[shell][direct]") {
    CHECK(programCandidates("true", "/usr/local/bin:/usr/bin/:/bin") ==
          Words{"/usr/local/bin/true", "/usr/bin/true", "/bin/true"});
    // An empty element is the working directory.
    CHECK(programCandidates("x", ":/bin") == Words{"x", "/bin/x"});
    CHECK(programCandidates("x", "/bin:") == Words{"/bin/x", "x"});
    CHECK(programCandidates("x", "") == Words{"x"});
    // A word with a slash is a path: no search.
    CHECK(programCandidates("./run.sh", "/bin") == Words{"./run.sh"});
    CHECK(programCandidates("/opt/x/bin/y", "/bin") == Words{"/opt/x/bin/y"});
}
