// Tests of the VHD reader (vpc_read.h) on hand-built images, including hostile ones.
#include "vpc_test_images.h"

#include "hosted_read.h"
#include "hosted_support.h"
#include "vpc_read.h"

#include <doctest/doctest.h>
