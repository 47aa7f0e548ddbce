// The composition root: parses the command line, builds every module in dependency order
// (config, logging, store, pool, plugins, workflows, engine, scheduler, control socket), runs
// the event loop, and tears the modules down in reverse order. Only this module sees everything.
#ifndef TASKHUB_APP_APP_H
#define TASKHUB_APP_APP_H

namespace taskhub::app {

// taskhubd's main(). Returns the process exit code.
int run(int argc, char** argv);

} // namespace taskhub::app

#endif // TASKHUB_APP_APP_H
