// What taskhubctl asks the daemon on the side, with a short timeout and quietly doing without
// when it does not answer: its time zone (the zone times are shown in) and its versions
// (--version). Both come from the `status` reply (docs/control-protocol.md, "Status").
#ifndef TASKHUB_CTL_DAEMON_INFO_H
#define TASKHUB_CTL_DAEMON_INFO_H

#include "client.h"

namespace date {
class time_zone;
}

namespace taskhub::ctl {

// The daemon's zone (status' `timezone`); when the daemon does not answer or names a zone this
// machine does not know, localZone().
const date::time_zone* daemonZone(const Client& client);
// This machine's zone: $TZ when it names an IANA zone (":Europe/Berlin" too), else the system
// zone (/etc/localtime), else UTC.
const date::time_zone* localZone();
const date::time_zone* utcZone();

// --version: "taskhubctl 0.1.0", and when the daemon answers "taskhubd 0.1.0" and
// "plugin ABI 1.7"; with json one object {"taskhubctl": "0.1.0", "taskhubd": "0.1.0" or null,
// "plugin_abi": "1.7" or null, "proto": 1 or null}. Returns 0.
int printVersions(const Client& client, bool json);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_DAEMON_INFO_H
