/* The plugin ABI is header-only; SwiftPM needs one source file per C target. */
#include "condense_plugin.h"
