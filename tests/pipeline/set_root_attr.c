// set_root_attr.c: a test tool (no h5py here): sets a fixed-length string attribute on the root group of an
// HDF5 file, replacing it if it exists. test_device_e2e.sh uses it to make a partial artifact say that
// another backend started it, which this machine (no GPU) cannot produce otherwise; test_recipe_input.sh
// stores a hostile recipe in an artifact (VALUE @PATH: the contents of PATH, beyond argv's 128 KiB).
//   moeq_test_set_root_attr FILE NAME VALUE|@PATH     exit 0, or 1 with a message
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s FILE NAME VALUE\n", argv[0]);
        return 1;
    }
    const char *path = argv[1], *name = argv[2], *value = argv[3];
    static char text[1 << 22];
    if (value[0] == '@') {
        FILE *in = fopen(value + 1, "rb");
        size_t n = in ? fread(text, 1, sizeof text - 1, in) : 0;
        if (!in || ferror(in) || n == sizeof text - 1) {
            fprintf(stderr, "%s: cannot read (or larger than 4 MiB)\n", value + 1);
            if (in) fclose(in);
            return 1;
        }
        fclose(in);
        text[n] = '\0';
        value = text;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "%s: cannot open for writing\n", path);
        return 1;
    }
    int ok = 1;
    if (H5Aexists(f, name) > 0 && H5Adelete(f, name) < 0) ok = 0;
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    if (ok && t >= 0 && sp >= 0 && H5Tset_size(t, strlen(value) ? strlen(value) : 1) >= 0 &&
        H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0)
        a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, t, value) < 0) ok = 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (H5Fclose(f) < 0) ok = 0;
    if (!ok) fprintf(stderr, "%s: cannot set root attribute '%s'\n", path, name);
    return ok ? 0 : 1;
}
