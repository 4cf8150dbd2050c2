#ifndef FISSION_CRDKAFKA_SHIM_H
#define FISSION_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
// The mock cluster is our local broker (DESIGN.md §6); its API ships in the same package.
#include <librdkafka/rdkafka_mock.h>
#endif
