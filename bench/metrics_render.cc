// The in-process part of the metrics_export benchmark: what rendering the metrics costs the event
// loop with N workflows (each with one finished run of one task attempt), with nothing around it:
// metrics::Metrics::render() (OpenMetrics) and metrics_export::toPrometheusText() (the text format
// 0.0.4 a plain scrape and the textfile get). Prints one JSON object.
//
//   metrics_render [--workflows N] [--reps K]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "metrics/metrics.h"
#include "metrics_export/text_format.h"

using namespace taskhub;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
    int workflows = 1000, reps = 21;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--workflows") == 0) workflows = std::atoi(argv[i + 1]);
        if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
    }
    metrics::LiveState live;
    live.plugins = {{"noop", "healthy", true}, {"shell", "healthy", true}};
    metrics::Metrics m({"0.1.0", "1.3", 1765062000000});
    m.setLiveSource([live] { return live; });
    std::set<std::string> names;
    for (int i = 0; i < workflows; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "wf%04d", i);
        names.insert(name);
    }
    m.setPlugins({"noop", "shell"});
    m.setWorkflows(names);
    for (const auto& w : names) {
        store::RunRecord r;
        r.id = w + "@x";
        r.workflow = w;
        r.state = model::RunState::Running;
        r.created_ms = 1765062000000;
        r.started_ms = 1765062000000;
        m.runCreated(r);
        m.runStarted(r);
        store::TaskRecord t;
        t.task_id = "t";
        t.plugin = "noop";
        t.state = model::TaskState::Succeeded;
        t.started_ms = 1765062000000;
        t.ended_ms = 1765062000100;
        m.attemptEnded(r, t);
        r.state = model::RunState::Succeeded;
        r.ended_ms = 1765062000200;
        m.runEnded(r, {&t});
    }
    std::vector<double> render_ms, convert_ms;
    size_t om_bytes = 0, text_bytes = 0;
    for (int k = 0; k < reps; ++k) {
        const auto t0 = Clock::now();
        const std::string om = m.render();
        const auto t1 = Clock::now();
        const std::string text = metrics_export::toPrometheusText(om);
        const auto t2 = Clock::now();
        render_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        convert_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        om_bytes = om.size();
        text_bytes = text.size();
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("{\"workflows\": %d, \"render_ms\": %.3f, \"convert_ms\": %.3f, \"openmetrics_bytes\": %zu, "
                "\"text_bytes\": %zu}\n",
                workflows, median(render_ms), median(convert_ms), om_bytes, text_bytes);
    return 0;
}
