// Name/value pairs in the order they were set: a run's params, a task's outputs. Shared by the
// plugin host (which collects outputs), the engine, the store and the control channel.
#ifndef TASKHUB_MODEL_NAME_VALUES_H
#define TASKHUB_MODEL_NAME_VALUES_H

#include <string>
#include <utility>
#include <vector>

namespace taskhub::model {

using NameValues = std::vector<std::pair<std::string, std::string>>;

} // namespace taskhub::model

#endif // TASKHUB_MODEL_NAME_VALUES_H
