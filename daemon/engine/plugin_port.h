// How the engine reaches plugins: the four PluginHost calls it makes. Everything else it does
// with a plugin (start an attempt, cancel, suspend, resume, canSuspend, its capabilities) goes
// through the plugin_host::Plugin that find() returns. Engine's public constructor wraps the
// daemon's PluginHost in PluginHostPort; tests give the engine fake plugins through this seam.
#ifndef TASKHUB_ENGINE_PLUGIN_PORT_H
#define TASKHUB_ENGINE_PLUGIN_PORT_H

#include <optional>
#include <string>

#include "plugin_host/plugin_host.h"

namespace taskhub::engine {

class PluginPort {
public:
    virtual ~PluginPort() = default;
    // The plugin an attempt runs on, or null when none by that name may run (see unavailable()).
    virtual plugin_host::Plugin* find(const std::string& plugin) const = 0;
    // Why find() gave no plugin (the sentence an attempt fails with), or std::nullopt.
    virtual std::optional<std::string> unavailable(const std::string& plugin) const = 0;
    // Whether the plugin may take attempts now (its health), as PluginHost::dispatchable().
    virtual bool dispatchable(const std::string& plugin) const = 0;
    // Its health record (settings.on_unhealthy, since when, the last message), or null.
    virtual const plugin_host::PluginHealth* health(const std::string& plugin) const = 0;
};

// The daemon's plugins.
class PluginHostPort final : public PluginPort {
public:
    explicit PluginHostPort(plugin_host::PluginHost& host) : host_(host) {}
    plugin_host::Plugin* find(const std::string& plugin) const override { return host_.find(plugin); }
    std::optional<std::string> unavailable(const std::string& plugin) const override {
        return host_.unavailable(plugin);
    }
    bool dispatchable(const std::string& plugin) const override { return host_.dispatchable(plugin); }
    const plugin_host::PluginHealth* health(const std::string& plugin) const override {
        return host_.health(plugin);
    }

private:
    plugin_host::PluginHost& host_;
};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_PLUGIN_PORT_H
