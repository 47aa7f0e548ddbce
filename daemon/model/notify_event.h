// What a notification is about (`on = [...]` in [[notify]], the event of an outbox row, the
// X-TaskHub-Event header): one name table, like every enum of the domain.
#ifndef TASKHUB_MODEL_NOTIFY_EVENT_H
#define TASKHUB_MODEL_NOTIFY_EVENT_H

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>

#include "model/names.h"

namespace taskhub::model {

// Failure: a top-level run ended failed (a run timeout is a failure; a cancelled run is not).
// Success: it succeeded. Recovery: the first success after one or more failed runs of its
// workflow. DeadlineMissed: a scheduled firing had not succeeded by its workflow's deadline.
// Lost: recovery after a crash found attempts of the run lost. Test: `taskhubctl notify test`
// (never a value of `on`).
enum class NotifyEvent : uint8_t { Failure, Success, Recovery, DeadlineMissed, Lost, Test };

template <>
struct NameTable<NotifyEvent> {
    static constexpr std::array<std::pair<NotifyEvent, std::string_view>, 6> entries{{
        {NotifyEvent::Failure, "failure"},
        {NotifyEvent::Success, "success"},
        {NotifyEvent::Recovery, "recovery"},
        {NotifyEvent::DeadlineMissed, "deadline_missed"},
        {NotifyEvent::Lost, "lost"},
        {NotifyEvent::Test, "test"},
    }};
};
static_assert(tableIsComplete<NotifyEvent>());

// State of one notification in the outbox.
enum class NotifyState : uint8_t { Pending, Sent, Failed, Dropped };

template <>
struct NameTable<NotifyState> {
    static constexpr std::array<std::pair<NotifyState, std::string_view>, 4> entries{{
        {NotifyState::Pending, "pending"},
        {NotifyState::Sent, "sent"},
        {NotifyState::Failed, "failed"},
        {NotifyState::Dropped, "dropped"},
    }};
};
static_assert(tableIsComplete<NotifyState>());

// Where a notification goes.
enum class NotifyKind : uint8_t { Command, Mail, Webhook };

template <>
struct NameTable<NotifyKind> {
    static constexpr std::array<std::pair<NotifyKind, std::string_view>, 3> entries{{
        {NotifyKind::Command, "command"},
        {NotifyKind::Mail, "mail"},
        {NotifyKind::Webhook, "webhook"},
    }};
};
static_assert(tableIsComplete<NotifyKind>());

} // namespace taskhub::model

#endif // TASKHUB_MODEL_NOTIFY_EVENT_H
