// LogThrottle: at most `burst` lines of one kind per second in the daemon log; what is held back
// is counted and reported with the next line that is let through. Clients decide how often the
// control server has something to say (refused connections, refused commands), so those lines
// are throttled: a flood costs the log a few lines per second, never the disk.
//
// Threading: one thread (the event loop).
#ifndef TASKHUB_CONTROL_LOG_THROTTLE_H
#define TASKHUB_CONTROL_LOG_THROTTLE_H

#include <chrono>
#include <cstdint>
#include <string>

namespace taskhub::control {

class LogThrottle {
public:
    explicit LogThrottle(int burst) : burst_(burst) {}

    // True when a line may be written now. *suffix is then "" or, when lines were held back since
    // the last one written, " (N similar line(s) suppressed)" to append to it.
    bool admit(std::string* suffix) {
        const auto now = std::chrono::steady_clock::now();
        if (now - window_start_ >= std::chrono::seconds(1)) {
            window_start_ = now;
            in_window_ = 0;
        }
        if (in_window_ >= burst_) {
            ++suppressed_;
            return false;
        }
        ++in_window_;
        *suffix = suppressed_ ? " (" + std::to_string(suppressed_) + " similar line(s) suppressed)" : "";
        suppressed_ = 0;
        return true;
    }

private:
    int burst_;
    int in_window_ = 0;
    uint64_t suppressed_ = 0;
    std::chrono::steady_clock::time_point window_start_{};
};

} // namespace taskhub::control

#endif // TASKHUB_CONTROL_LOG_THROTTLE_H
