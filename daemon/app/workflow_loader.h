// Loads workflow files off the event loop. A 100,000-task file takes seconds to read, parse and
// build; done on the loop, that stalled every client and timer meanwhile. The loader runs such
// work on a thread of its own, one job at a time in the order given, and hands each result back
// to the loop (where WorkflowDirectory::apply() makes it current), so that jobs also apply in
// order.
//
// Plugin validate() calls stay on the event loop, as the plugin ABI's threading contract expects
// of a TH_THREADS_SERIAL plugin (validate() arrives on the loop, never concurrently with
// its other calls there): the job's catalog posts each validate() call to the loop and waits for
// its answer. The loop thus runs one short call at a time between its other work; the loader
// thread does everything else. Whether a plugin is loaded (unavailable()) is answered on the
// loader thread: the set of plugins never changes after start-up.
//
// Threading: construct, add jobs and stop() on the event-loop thread; the loop must run for
// jobs to finish. stop() drops the jobs not started and makes a job waiting on the loop give up;
// no callback runs after it. It does not wait for a job being read (that would stall the loop
// while it drains at shutdown): the destructor joins the thread.
#ifndef TASKHUB_APP_WORKFLOW_LOADER_H
#define TASKHUB_APP_WORKFLOW_LOADER_H

#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}
namespace taskhub::config {
class PluginCatalog;
}

namespace taskhub::app {

class WorkflowLoader {
public:
    // work runs on the loader thread with a catalog that keeps validate() on the loop, and
    // returns what then runs on the loop (e.g. applying the result).
    using Work = std::function<std::function<void()>(const config::PluginCatalog& plugins)>;

    // plugins (the daemon's catalog) must outlive this object.
    WorkflowLoader(boost::asio::io_context& io, const config::PluginCatalog& plugins);
    ~WorkflowLoader();
    WorkflowLoader(const WorkflowLoader&) = delete;
    WorkflowLoader& operator=(const WorkflowLoader&) = delete;

    void add(Work work);
    void stop();

    struct State; // shared with the thread and the calls it posts, which may outlive this object

private:
    std::shared_ptr<State> state_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_WORKFLOW_LOADER_H
