// Tests of the VHDX reader (vhdx_read.h).
#include "hosted_read.h"
#include "hosted_support.h"
#include "vhdx_read.h"

#include <doctest/doctest.h>
