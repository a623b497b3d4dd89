/* ops_color: colour and filter functions (BLITLINE.md 4.4). */
#include <string.h>

#include "image.h"
#include "job.h"
#include "ops.h"

/* clang-format off */
const struct op ops_color[] = {
    {NULL, NULL},
};
/* clang-format on */
