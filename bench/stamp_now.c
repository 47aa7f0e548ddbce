/* The recorder of bench_trigger_lateness's shell task and of bench/raw_timer: reads
 * CLOCK_REALTIME first thing in main() and appends one line "LABEL SECONDS.NANOSECONDS" to FILE
 * (O_APPEND, one write). LABEL is the second argument, else $TASKHUB_RUN_ID (the run id of a
 * scheduled run names its scheduled instant), else "-".
 *
 *   stamp_now FILE [LABEL]
 *
 * Linked statically: a dynamically linked program spends its first 0.3-1 ms in the dynamic loader
 * on this VM (mapping libc, relocations, and CPUID instructions, which trap to the hypervisor),
 * which would be counted as lateness; date(1) adds that plus its own start-up and a fork of the
 * shell around `>>`. Static, the program is in main() after an execve and the C library's own
 * start-up, and the baseline pays the same. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (argc < 2) {
        static const char usage[] = "usage: stamp_now FILE [LABEL]\n";
        (void)!write(2, usage, sizeof usage - 1);
        return 2;
    }
    const char* label = argc > 2 ? argv[2] : getenv("TASKHUB_RUN_ID");
    if (label == NULL || *label == '\0') label = "-";
    char line[512];
    int n = snprintf(line, sizeof line, "%s %lld.%09ld\n", label, (long long)now.tv_sec, now.tv_nsec);
    if (n < 0 || (size_t)n >= sizeof line) return 1;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    if (write(fd, line, (size_t)n) != n) {
        perror(argv[1]);
        return 1;
    }
    return close(fd) == 0 ? 0 : 1;
}
