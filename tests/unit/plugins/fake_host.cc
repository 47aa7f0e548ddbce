#include "fake_host.h"

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

namespace taskhub::tests {
namespace {

constexpr size_t kBufferSize = 1024;

} // namespace

LoadedPlugin::LoadedPlugin(const std::string& path) {
    handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    INFO("dlopen(" << path << "): " << (handle_ ? "ok" : ::dlerror()));
    REQUIRE(handle_ != nullptr);
    auto entry = reinterpret_cast<th_plugin_entry_fn>(::dlsym(handle_, TH_PLUGIN_ENTRY_SYMBOL));
    if (entry != nullptr) api_ = entry(TH_ABI_VERSION_MAJOR, TH_ABI_VERSION_MINOR);
}

LoadedPlugin::~LoadedPlugin() {
    if (handle_ != nullptr) ::dlclose(handle_);
}

th_host_api FakeHost::hostApi(Abi abi) {
    th_host_api api{};
    api.struct_size = abi == Abi::V1_0 ? offsetof(th_host_api, set_output) : sizeof api;
    api.abi_major = TH_ABI_VERSION_MAJOR;
    api.abi_minor = TH_ABI_VERSION_MINOR;
    api.complete = &FakeHost::onComplete;
    api.log = &FakeHost::onLog;
    api.watch_fd = &FakeHost::onWatchFd;
    api.unwatch_fd = &FakeHost::onUnwatchFd;
    api.add_timer = &FakeHost::onAddTimer;
    api.cancel_timer = &FakeHost::onCancelTimer;
    if (abi == Abi::V1_0) {
        api.abi_minor = 0;
    } else {
        api.set_output = &FakeHost::onSetOutput;
    }
    return api;
}

FakeHost::FakeHost(const LoadedPlugin& plugin, const std::string& config_json, Abi abi)
    : plugin_(plugin.api()), host_api_(hostApi(abi)), loop_thread_(std::this_thread::get_id()) {
    REQUIRE(plugin_ != nullptr);
    std::string error(kBufferSize, '\0');
    th_status status =
        plugin_->create(&host_api_, reinterpret_cast<th_host_ctx*>(this), config_json.c_str(),
                        &instance_, th_buffer{error.data(), error.size()});
    INFO("create(" << config_json << "): " << error.c_str());
    REQUIRE(status == TH_OK);
    REQUIRE(instance_ != nullptr);
}

FakeHost::~FakeHost() {
    if (instance_ != nullptr) plugin_->destroy(instance_);
}

std::pair<th_status, std::string> FakeHost::createFailure(const LoadedPlugin& plugin,
                                                          const std::string& config_json) {
    REQUIRE(plugin.api() != nullptr);
    th_host_api api = hostApi(Abi::Current);
    th_instance* instance = nullptr;
    std::string error(kBufferSize, '\0');
    th_status status = plugin.api()->create(&api, nullptr, config_json.c_str(), &instance,
                                            th_buffer{error.data(), error.size()});
    if (status == TH_OK && instance != nullptr) plugin.api()->destroy(instance);
    return {status, error.c_str()};
}

ValidateResult FakeHost::validate(const std::string& params_json) {
    std::string message(kBufferSize, '\0');
    std::string key(kBufferSize, '\0');
    ValidateResult result;
    result.status = plugin_->validate(instance_, params_json.c_str(),
                                      th_buffer{message.data(), message.size()},
                                      th_buffer{key.data(), key.size()});
    result.message = message.c_str();
    result.key = key.c_str();
    return result;
}

th_status FakeHost::execute(uint64_t token, const TaskSpec& spec, std::string* error) {
    std::vector<const char*> env;
    for (const std::string& e : spec.env) env.push_back(e.c_str());
    env.push_back(nullptr);

    th_task task{};
    task.struct_size = sizeof task;
    task.workflow = "wf";
    task.run_id = "run-1";
    task.task_id = "t1";
    task.attempt = 1;
    task.params_json = spec.params_json.c_str();
    task.params_len = spec.params_json.size();
    task.env = env.data();
    task.log_fd = spec.log_fd;
    task.timeout_ms = 0;
    task.run_as = spec.run_as;
    task.cgroup_fd = spec.cgroup_fd;

    std::string message(kBufferSize, '\0');
    th_status status =
        plugin_->execute(instance_, &task, token, th_buffer{message.data(), message.size()});
    if (error != nullptr) *error = message.c_str();
    return status;
}

th_status FakeHost::cancel(uint64_t token) { return plugin_->cancel(instance_, token); }

th_status FakeHost::suspend(uint64_t token) {
    REQUIRE(TH_HAS_FIELD(plugin_, th_plugin_api, suspend));
    REQUIRE(plugin_->suspend != nullptr);
    return plugin_->suspend(instance_, token);
}

th_status FakeHost::resume(uint64_t token) {
    REQUIRE(TH_HAS_FIELD(plugin_, th_plugin_api, resume));
    REQUIRE(plugin_->resume != nullptr);
    return plugin_->resume(instance_, token);
}

std::vector<std::pair<std::string, std::string>> FakeHost::outputs(uint64_t token) const {
    std::lock_guard<std::mutex> lock(outputs_mu_);
    auto it = outputs_.find(token);
    return it == outputs_.end() ? std::vector<std::pair<std::string, std::string>>{} : it->second;
}

th_status FakeHost::health(th_health_state* state, std::string* message) {
    std::string text(kBufferSize, '\0');
    th_health health{};
    health.struct_size = sizeof health;
    health.message = th_buffer{text.data(), text.size()};
    th_status status = plugin_->health_check(instance_, &health);
    *state = static_cast<th_health_state>(health.state);
    *message = text.c_str();
    return status;
}

std::optional<Completion> FakeHost::completion(uint64_t token) const {
    auto it = completions_.find(token);
    if (it == completions_.end()) return std::nullopt;
    return it->second;
}

std::optional<Completion> FakeHost::waitFor(uint64_t token, std::chrono::milliseconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    while (!completions_.count(token)) {
        Clock::time_point now = Clock::now();
        if (now >= deadline) return std::nullopt;
        runOnce(std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    }
    return completions_.at(token);
}

void FakeHost::runFor(std::chrono::milliseconds duration) {
    const Clock::time_point deadline = Clock::now() + duration;
    for (Clock::time_point now = Clock::now(); now < deadline; now = Clock::now())
        runOnce(std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
}

void FakeHost::runOnce(std::chrono::milliseconds max_wait) {
    std::chrono::milliseconds wait = max_wait;
    for (const auto& [id, timer] : timers_) {
        auto until_due = std::chrono::ceil<std::chrono::milliseconds>(timer.due - Clock::now());
        wait = std::max(std::chrono::milliseconds(0), std::min(wait, until_due));
    }

    std::vector<pollfd> fds;
    std::vector<uint64_t> ids;
    for (const auto& [id, watch] : watches_) {
        fds.push_back(pollfd{watch.fd, POLLIN, 0});
        ids.push_back(id);
    }
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    REQUIRE((ready >= 0 || errno == EINTR));

    // One-shot: a watch or timer leaves the table before its callback runs, and callbacks may
    // add or remove others, so every id is looked up again just before it fires.
    for (size_t i = 0; i < fds.size() && ready > 0; ++i) {
        if (fds[i].revents == 0) continue;
        auto it = watches_.find(ids[i]);
        if (it == watches_.end()) continue;
        Watch watch = it->second;
        watches_.erase(it);
        watch.cb(watch.user, watch.fd);
    }
    std::vector<uint64_t> due;
    for (const auto& [id, timer] : timers_)
        if (timer.due <= Clock::now()) due.push_back(id);
    for (uint64_t id : due) {
        auto it = timers_.find(id);
        if (it == timers_.end()) continue;
        Timer timer = it->second;
        timers_.erase(it);
        timer.cb(timer.user);
    }
}

void FakeHost::checkLoopThread() {
    if (std::this_thread::get_id() != loop_thread_) ++off_loop_calls_;
}

void FakeHost::onComplete(th_host_ctx* ctx, uint64_t token, const th_result* result) {
    FakeHost* host = self(ctx);
    Completion c;
    c.outcome = result->outcome;
    c.exit_code = result->exit_code;
    c.message = result->message ? result->message : "";
    if (TH_HAS_FIELD(result, th_result, max_rss_kb)) {
        c.cpu_user_us = result->cpu_user_us;
        c.cpu_system_us = result->cpu_system_us;
        c.max_rss_kb = result->max_rss_kb;
    }
    if (!host->completions_.emplace(token, c).second) ++host->duplicate_completions_;
}

th_status FakeHost::onSetOutput(th_host_ctx* ctx, uint64_t token, const char* name,
                               const char* value) {
    FakeHost* host = self(ctx);
    if (name == nullptr || value == nullptr) return TH_ERR_INVALID;
    std::lock_guard<std::mutex> lock(host->outputs_mu_);
    // Completions are recorded on the loop thread; a plugin completing on another thread is
    // not a case these tests drive, so this read is safe here.
    if (host->completions_.count(token)) {
        ++host->late_outputs_;
        return TH_ERR_INVALID;
    }
    host->outputs_[token].emplace_back(name, value);
    return TH_OK;
}

void FakeHost::onLog(th_host_ctx* ctx, int32_t level, const char* msg) {
    if (ctx == nullptr) return; // createFailure() hands out no context
    self(ctx)->log_lines_.push_back(std::to_string(level) + " " + msg);
}

th_status FakeHost::onWatchFd(th_host_ctx* ctx, int fd, th_fd_callback cb, void* user,
                              uint64_t* watch_id) {
    FakeHost* host = self(ctx);
    host->checkLoopThread();
    *watch_id = host->next_id_++;
    host->watches_[*watch_id] = Watch{fd, cb, user};
    return TH_OK;
}

void FakeHost::onUnwatchFd(th_host_ctx* ctx, uint64_t watch_id) {
    FakeHost* host = self(ctx);
    host->checkLoopThread();
    host->watches_.erase(watch_id);
}

th_status FakeHost::onAddTimer(th_host_ctx* ctx, uint64_t delay_ms, th_timer_callback cb,
                               void* user, uint64_t* timer_id) {
    FakeHost* host = self(ctx);
    host->checkLoopThread();
    *timer_id = host->next_id_++;
    host->timers_[*timer_id] =
        Timer{Clock::now() + std::chrono::milliseconds(delay_ms), cb, user};
    return TH_OK;
}

void FakeHost::onCancelTimer(th_host_ctx* ctx, uint64_t timer_id) {
    FakeHost* host = self(ctx);
    host->checkLoopThread();
    host->timers_.erase(timer_id);
}

} // namespace taskhub::tests
