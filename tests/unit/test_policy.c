/* ImageMagick's security policy as img_start() sets it (README "What a job may feed
 * ImageMagick"): no delegates, no filters, no file paths, only the coders pixq needs (a source
 * format only when PIXQ_IMAGE_FORMATS names it), and the PIXQ_MAGICK_* resource limits. Checked
 * through the policy itself and by reads that bypass pixq's own sniffing of the format. */
#include <stdio.h>
#include <string.h>
#include <wand/MagickWand.h>

#include "cfg.h"
#include "check.h"
#include "err.h"
#include "image.h"

#define MIB (1024ULL * 1024ULL)

static bool allowed(PolicyDomain domain, PolicyRights rights, const char *pattern)
{
    return IsRightsAuthorized(domain, rights, pattern) == MagickTrue;
}

static void test_rights(void)
{
    /* no external programs (Ghostscript, curl, ...) and no filter modules */
    CHECK(!allowed(DelegatePolicyDomain, ExecutePolicyRights, "gs"));
    CHECK(!allowed(DelegatePolicyDomain, ExecutePolicyRights, "https"));
    CHECK(!allowed(FilterPolicyDomain, ExecutePolicyRights, "analyze"));
    /* no file named in an image's text or an MVG/MSL script */
    CHECK(!allowed(PathPolicyDomain, ReadPolicyRights, "/etc/passwd"));
    CHECK(!allowed(PathPolicyDomain, WritePolicyRights, "/root/x.png"));
    /* the default formats, read and written */
    static const char *const sources[] = {"JPEG", "PNG", "GIF", "WEBP"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        CHECK(allowed(CoderPolicyDomain, ReadPolicyRights, sources[i]));
        CHECK(allowed(CoderPolicyDomain, WritePolicyRights, sources[i]));
        CHECK(allowed(ModulePolicyDomain, ReadPolicyRights, sources[i]));
    }
    /* tiff, heic, avif and bmp only when PIXQ_IMAGE_FORMATS adds them (TIFF and BMP written) */
    CHECK(!allowed(CoderPolicyDomain, ReadPolicyRights, "TIFF"));
    CHECK(allowed(CoderPolicyDomain, WritePolicyRights, "TIFF"));
    CHECK(!allowed(CoderPolicyDomain, ReadPolicyRights, "HEIC"));
    CHECK(!allowed(CoderPolicyDomain, ReadPolicyRights, "AVIF"));
    CHECK(!allowed(CoderPolicyDomain, ReadPolicyRights, "BMP"));
    /* and nothing else, read or written */
    static const char *const others[] = {"SVG",  "MVG", "MSL",   "PS",        "EPS",  "PDF",
                                         "TEXT", "TXT", "HTML",  "EPHEMERAL", "URL",  "HTTPS",
                                         "INFO", "XPS", "LABEL", "CAPTION",   "MPEG", "PATTERN"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (allowed(CoderPolicyDomain, ReadPolicyRights, others[i]) ||
            allowed(CoderPolicyDomain, WritePolicyRights, others[i])) {
            fprintf(stderr, "  coder %s is allowed\n", others[i]);
            CHECK(false);
        }
    }
    CHECK(!allowed(ModulePolicyDomain, ReadPolicyRights, "SVG"));
    CHECK(!allowed(ModulePolicyDomain, ReadPolicyRights, "PS"));
}

/* Reads as a job's bytes would reach ImageMagick if pixq's sniffer let them through. */
static void test_reads(void)
{
    static const char mvg[] = "viewbox 0 0 8 8\nimage over 0,0 8,8 '/etc/hostname'\n";
    static const char svg[] = "<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'>"
                              "<image href='/etc/hostname' width='8' height='8'/></svg>";
    static const char text[] = "hello\n";
    const struct {
        const char *format;
        const char *data;
    } blobs[] = {{"MVG", mvg}, {"SVG", svg}, {"TEXT", text}, {"MSL", "<image/>"}};
    for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++) {
        MagickWand *w = NewMagickWand();
        MagickSetFormat(w, blobs[i].format);
        if (MagickReadImageBlob(w, blobs[i].data, strlen(blobs[i].data)) != MagickFalse) {
            fprintf(stderr, "  %s was read\n", blobs[i].format);
            CHECK(false);
        }
        DestroyMagickWand(w);
    }
    static const char *const names[] = {"/etc/hostname", "text:/etc/hostname", "msl:/dev/null",
                                        "https://example.com/a.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        MagickWand *w = NewMagickWand();
        if (MagickReadImage(w, names[i]) != MagickFalse) {
            fprintf(stderr, "  %s was read\n", names[i]);
            CHECK(false);
        }
        DestroyMagickWand(w);
    }
    /* while a PNG made here is read back */
    MagickWand *w = NewMagickWand();
    PixelWand *p = NewPixelWand();
    PixelSetColor(p, "red");
    CHECK(MagickNewImage(w, 8, 8, p) != MagickFalse && MagickSetImageFormat(w, "PNG"));
    size_t len = 0;
    unsigned char *png = MagickGetImageBlob(w, &len);
    CHECK(png != NULL && len > 0);
    MagickWand *back = NewMagickWand();
    CHECK(png != NULL && MagickReadImageBlob(back, png, len) != MagickFalse);
    CHECK_INT((long)MagickGetImageWidth(back), 8);
    MagickRelinquishMemory(png);
    DestroyMagickWand(back);
    DestroyPixelWand(p);
    DestroyMagickWand(w);
}

/* PIXQ_MAGICK_MEMORY_MB, _MAP_MB and _DISK_MB, below Debian's policy.xml (256 MiB, 512 MiB,
 * 1 GiB), are ImageMagick's limits. */
static void test_limits(void)
{
    CHECK(GetMagickResourceLimit(MemoryResource) == 100 * MIB);
    CHECK(GetMagickResourceLimit(MapResource) == 200 * MIB);
    CHECK(GetMagickResourceLimit(DiskResource) == 300 * MIB);
    CHECK(GetMagickResourceLimit(ThreadResource) == 1);
}

int main(void)
{
    static struct cfg cfg;
    struct img_config ic;
    struct err e = {{0}};
    cfg_defaults(&cfg);
    if (img_config_from(&cfg, &ic, &e) < 0) {
        fprintf(stderr, "policy: %s\n", e.msg);
        return 1;
    }
    ic.time_s = 3600;
    ic.memory_mb = 100;
    ic.map_mb = 200;
    ic.disk_mb = 300;
    if (img_start(&ic, &e) < 0) {
        fprintf(stderr, "policy: %s\n", e.msg);
        return 1;
    }
    test_rights();
    test_reads();
    test_limits();
    int rc = check_summary("policy");
    img_shutdown(); /* removes ImageMagick's temporary directory */
    return rc;
}
