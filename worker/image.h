/* image: the bridge to ImageMagick's MagickWand (the only module besides the ops that includes
 * it), and the image guard every source goes through.
 *
 * ImageMagick is started once per process (img_start) with one thread (a worker process is one
 * core's worth of work; N processes per machine scale out) and a security policy set in code:
 * no delegate, no filter, no path but ImageMagick's own configuration files, and no coder or
 * module but the few pixq reads (the formats of PIXQ_IMAGE_FORMATS) and writes (JPEG, PNG, WebP,
 * GIF, BMP, TIFF). Its resource limits for memory, map, disk, area, width, height and list
 * length come from the configuration; a limit can only lower what ImageMagick's own policy.xml
 * allows. If any of this fails, the worker does not start.
 *
 * A source (img_decode) is sniffed (sniff.h) and refused unless its bytes are an allowed format
 * and its headers declare at most the configured frames and pixels per frame; it is then pinged
 * by ImageMagick with that format named explicitly (ImageMagick never guesses), every frame
 * checked again, and only its first frame is decoded. Every MagickFalse becomes a -1 with a
 * message, even when ImageMagick gave no exception text.
 *
 * Time: ImageMagick's own time limit counts from the process's first image and kills the process
 * (a fatal exception), so it is never set. Instead every decoded source (and every canvas) carries
 * a deadline, PIXQ_MAGICK_TIME_S after it was started, in ImageMagick's progress monitor: once it
 * passes, decoders, operations and encoders stop, and the failure says so. Clones inherit it, and
 * so do the layers and bands an operation makes for an image (img_layer), so it bounds everything
 * made from the source. */
#ifndef PIXQ_IMAGE_H
#define PIXQ_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <wand/MagickWand.h>

#include "cfg.h"
#include "err.h"
#include "job.h"
#include "sniff.h"

#define IMG_MAX_SIDE    65535L /* ImageMagick's width and height limit (its policy may be lower) */
#define IMG_FORMATS_MAX 256    /* bytes of the allowed-formats text, "jpeg, png, gif, webp" */
/* the image artifact holding the interlace function's type, for saves that name none */
#define IMG_INTERLACE_ARTIFACT "pixq:interlace"
/* set by add_profile on an image whose ICC profile it applied: a save that drops the profile
 * keeps the pixels as they are, converted to (or tagged with) it, as Blitline kept them, instead
 * of converting them to sRGB through it */
#define IMG_ADDED_PROFILE_ARTIFACT "pixq:added-profile"

/* The image guard's settings, fixed at start-up. A plain value: tests build it on the stack. */
struct img_config {
    unsigned formats; /* accepted source formats: bit (1u << SNIFF_JPEG)... */
    long max_pixels;  /* ImageMagick's area limit (sources are checked against their loader's) */
    long max_frames;  /* most frames in a source (ImageMagick's list-length limit: one more) */
    long memory_mb;   /* ImageMagick's memory, map and disk limits, MiB */
    long map_mb;
    long disk_mb;
    long time_s;         /* the deadline of each source, seconds (see above) */
    bool shrink_on_load; /* JPEG sources decoded at the smallest size the job needs (shrink.h) */
    bool jpeg_dc;        /* ... a progressive one wanted at 1/8 from its DC scans (jpegdc.h) */
    bool png_shrink;     /* a PNG wanted at 1/2, 1/4, 1/8 shrunk while decoded (pngshrink.h) */
    bool fast_resize;    /* img_resize resizes by resize.h where it can */

    long exif_max_values;  /* EXIF entries and values ImageMagick may format a read (metaguard.h) */
    long metadata_max_mb;  /* profile bytes ImageMagick may be handed a read, MiB (metaguard.h) */
    long xmp_max_elements; /* XMP elements ImageMagick may parse a read (metaguard.h) */
};

/* Parses a comma-separated list of formats ("jpeg,png, GIF"; see sniff_format_named()) into
 * bits of img_config.formats. Returns 0, or -1 for an unknown name or an empty list. */
int img_formats_parse(const char *list, unsigned *out, struct err *e);

/* The image guard's settings from the configuration (PIXQ_IMAGE_FORMATS, PIXQ_MAX_FRAMES,
 * PIXQ_MAX_PIXELS, PIXQ_MAGICK_*). Returns 0, or -1 if PIXQ_IMAGE_FORMATS is invalid. */
int img_config_from(const struct cfg *c, struct img_config *out, struct err *e);

/* Starts ImageMagick for this process with the image guard: the security policy, the resource
 * limits, one thread. Once per process: later calls fail. Returns 0, or -1 with the reason (the
 * policy was refused, a limit could not be set, ImageMagick's policy.xml sets a time limit that
 * would kill the process); the caller must then not process images (fail closed). */
int img_start(const struct img_config *c, struct err *e);

/* Starts ImageMagick with the default configuration unless img_start() already ran. If that
 * fails it logs why and exits the process: nothing may be decoded without the guard. */
void img_init(void);

/* Stops ImageMagick at process exit. */
void img_shutdown(void);

/* The ImageMagick this process runs ("ImageMagick 6.9.11-60 Q16", the first words of its version
 * string, which needs no start), into out. Returns out. */
const char *img_library_version(char *out, size_t cap);

/* Turns the wand's pending exception into `e` ("what: reason", img_magick_words()); always
 * returns -1. When the wand's image is past its deadline, the message says so. */
int img_fail(MagickWand *w, const char *what, struct err *e);

/* ImageMagick's message `text` without what only its developers read, into `out`: the source
 * place it appends (" @ error/jpeg.c/JPEGProgressHandler/361") and an empty quote of the file
 * (" `'"). Returns `out`. */
const char *img_magick_words(const char *text, char *out, size_t cap);

/* Whether the deadline the wand's current image carries (PIXQ_MAGICK_TIME_S from its source's
 * decoding) has passed: for pixq's own loops over rows, which ImageMagick's progress monitor
 * does not see. img_fail() then says "took longer than the limit". */
bool img_past_deadline(MagickWand *w);

/* Milliseconds left before that deadline (0 once it has passed), or -1 if the image carries
 * none. */
long img_time_left_ms(MagickWand *w);

/* PIXQ_MAGICK_TIME_S, seconds. */
long img_time_limit_s(void);

struct img_output {
    unsigned char *blob; /* encoded bytes; release with img_output_finish() */
    size_t len;
    long width, height;
    const char *content_type;    /* static string: "image/jpeg" */
    double density_x, density_y; /* resolution written, as ImageMagick reports it (0: none) */
    long depth;                  /* bits per channel */
    long quality;                /* compression quality ImageMagick wrote with (0: none) */
    bool blank;                  /* check_blank: every pixel one colour, or all transparent */
};

/* The image guard, then the decoding of the first frame of an encoded image: the format must be
 * an allowed one by its bytes, the frames at most img_config.max_frames and every frame (and the
 * canvas it sits on) at most `max_pixels`, from the headers before anything is decoded; a JPEG
 * whose data ends before its end marker is refused. Reports the size in `width`/`height`.
 * Returns a wand to destroy with DestroyMagickWand(), or NULL with a message for the user:
 * "Unsupported image format: SVG (allowed: jpeg, png, gif, webp)", "image is 30000x30000, more
 * than the limit of 50000000 pixels", "image has 5000 frames, more than the limit of 100"... */
MagickWand *img_decode(const void *data, size_t len, long max_pixels, long *width, long *height,
                       struct err *e);

/* A source that passed the image guard (headers and ImageMagick's ping) but whose pixels are not
 * decoded yet: img_probe() then img_read(), so that the caller can choose the size to decode at
 * once it knows the job (shrink-on-load). */
struct img_probe {
    enum sniff_format format;
    const char *name;   /* "JPEG"..., for messages (static) */
    long width, height; /* the first frame, as stored (before auto-orient); a TIFF's stacked
                           pages (see `pages`) */
    long pages;         /* a TIFF's pages img_read() stacks top to bottom, as Blitline did (the
                           widest page's width, the sum of their heights; within the limits: else
                           1, its first page); 0 or 1: the first frame. When a page cannot be
                           decoded, img_read() reads the first page and sets 1 and its size */
    int orientation;    /* its EXIF orientation (ImageMagick's OrientationType; 0: none; -1:
                           not known before decoding, for a JPEG) */
    void *deadline;     /* PIXQ_MAGICK_TIME_S from the probe (see above) */
    bool decoded;       /* the probe decoded the pixels already (WebP, see img_probe()) */
};

/* The image guard of img_decode() without the decoding: fills `p` and returns the pinged first
 * frame (headers, properties and profiles, no pixels; destroy it), or NULL with the reason. A
 * JPEG is pinged without its profiles (they are read once, with the pixels).
 * ImageMagick 6's WebP reader decodes the whole image even to ping it, and takes no size hint:
 * a still WebP is read by libwebp instead (webp.h: the wand is then a 1x1 image that carries
 * the profiles and orientation, the size is in `p`), and an animated one decoded here, once, by
 * ImageMagick (p->decoded is then true and the wand holds the pixels). */
MagickWand *img_probe(const void *data, size_t len, long max_pixels, struct img_probe *p,
                      struct err *e);

/* Decodes the first frame of a probed source (a TIFF's pages stacked, see img_probe.pages). With
 * `hint_w` x `hint_h` (0 x 0: none) a JPEG is decoded by libjpeg at a reduced scale (ImageMagick's
 * "jpeg:size": the largest of 1/8, 1/4, 3/8, 1/2 that keeps both sides at or above the hint), a
 * still WebP by libwebp at exactly that size, an 8-bit RGB(A), a palette or a grey PNG by
 * pngshrink.h at the JPEG's size when that scale is 1/2, 1/4 or 1/8 (a PNG it declines is read
 * whole); other formats ignore it. Returns a wand to destroy, or NULL with the reason. */
MagickWand *img_read(const void *data, size_t len, struct img_probe *p, long hint_w, long hint_h,
                     struct err *e);

/* Whether shrink-on-load is on (PIXQ_SHRINK_ON_LOAD, img_config.shrink_on_load). */
bool img_shrink_on_load(void);

/* Resizes the current image to `width` x `height` with ImageMagick's default filter (as
 * MagickResizeImage(w, width, height, UndefinedFilter, 1.0), `-resize WxH!`): by resize.h's
 * filters where it takes the image and PIXQ_FAST_RESIZE is on, else by ImageMagick. Returns 0, or
 * -1 with the reason, `what` first. */
int img_resize(MagickWand *w, long width, long height, const char *what, struct err *e);

/* A new `width` x `height` image filled with `color` (which may be transparent: the image then
 * has an alpha channel), with a deadline like a decoded source's. Returns a wand to destroy, or
 * NULL. */
MagickWand *img_solid(long width, long height, const PixelWand *color, struct err *e);

/* A new image as img_solid() makes, for the image of `of` (a layer or a band put on it, a part of
 * its work): it carries the deadline of `of`'s current image (none if that carries none), as a
 * clone of it would, rather than PIXQ_MAGICK_TIME_S of its own. Returns a wand to destroy, or
 * NULL. */
MagickWand *img_layer(MagickWand *of, long width, long height, const PixelWand *color,
                      struct err *e);

/* Rotates/flips the image upright according to its EXIF orientation. */
int img_auto_orient(MagickWand *w, struct err *e);

/* The value of the current image's property `name` when the read made it, else NULL: looked for
 * among the image's properties, never asked for by name, for ImageMagick would then walk the
 * EXIF profile again for a tag it lacks (metaguard.h). Borrowed: valid while the property is. */
const char *img_property_made(MagickWand *w, const char *name);

/* Labels sRGB a grey (GRAYColorspace) image whose pixels are no longer all grey: ImageMagick
 * keeps the grey label on an image that a composite, dissolve, tile, sepia_tone, vignette or a
 * channel's level made colour, and its JPEG, WebP and GIF encoders then write only its grey
 * levels (a red logo on a black-and-white photo came out grey there, red in PNG, BMP and TIFF). A
 * pass over the pixels, only for a grey image. */
void img_label_colour(MagickWand *w);

/* Forgets what every image of `w` was found to be grey or black-and-white (its `type`), after an
 * operation that may have changed its pixels: ImageMagick answers "is it grey?" from that record
 * when it holds, and its encoders then write a colour image as grey. ImageMagick's pixel cache
 * used to forget it on every write of pixels; Debian's 6.9.11.60+dfsg-1.6+deb12u16 took the cache
 * of 6.9.13, which does not (a grey photo with a red vignette came out grey in JPEG). The next
 * question about it looks at the pixels again. */
void img_forget_type(MagickWand *w);

/* What img_encode() makes of the image's metadata and format, without encoding it: the image a
 * pre_process job's save leaves for "&identifier". Returns 0, or -1 with the reason. */
int img_as_saved(MagickWand *w, const struct job_save *save, struct err *e);

/* ImageMagick format and MIME type for an output extension ("jpg" -> "JPEG", "image/jpeg");
 * returns false for formats pixq does not write. */
bool img_format_for(const char *ext, const char **magick, const char **content_type);

/* The extension of the i-th format img_format_for() knows, or NULL past the last. */
const char *img_format_ext(size_t i);

/* The ImageMagick format a probed source was read as, as img_format_for() names it ("BMP" where
 * ImageMagick calls the decoded image BMP3), or NULL (none: a canvas). */
const char *img_source_magick(const struct img_probe *p);

/* The MIME type of an ImageMagick format name ("JPEG" -> "image/jpeg"), or
 * "application/octet-stream" for a format pixq does not write (or NULL). */
const char *img_content_type(const char *magick);

/* Encodes the wand's image as `save` asks (format, quality, metadata, interlace, png_quantize);
 * `default_quality` applies when the save gives none. The wand is changed (stripped, quantized):
 * pass a clone if it is used again. Returns 0 or -1. */
int img_encode(MagickWand *w, const struct job_save *save, long default_quality, size_t max_bytes,
               struct img_output *out, struct err *e);

/* Releases what img_encode() produced; safe on a zeroed or finished output. */
void img_output_finish(struct img_output *out);

#endif
