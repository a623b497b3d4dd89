/* ops_draw: text, drawing and compositing functions (BLITLINE.md 4.2, 4.3). */
#include <string.h>

#include "image.h"
#include "job.h"
#include "ops.h"

/* clang-format off */
const struct op ops_draw[] = {
    {NULL, NULL},
};
/* clang-format on */
