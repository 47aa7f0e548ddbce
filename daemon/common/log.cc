#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace taskhub::logging {

void init(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("taskhubd");
    if (isatty(STDERR_FILENO)) {
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    } else {
        logger->set_pattern("%l %v");
    }
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
}

} // namespace taskhub::logging
