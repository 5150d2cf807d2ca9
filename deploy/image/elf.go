package image

import (
	"debug/elf"
	"fmt"
	"io"
)

// ociArch maps an ELF machine to the OCI/Go architecture name.
var ociArch = map[elf.Machine]string{
	elf.EM_X86_64:    "amd64",
	elf.EM_AARCH64:   "arm64",
	elf.EM_386:       "386",
	elf.EM_ARM:       "arm",
	elf.EM_RISCV:     "riscv64",
	elf.EM_S390:      "s390x",
	elf.EM_LOONGARCH: "loong64",
}

// inspectBinary checks that r is a statically linked ELF executable (no program interpreter, no
// DT_NEEDED libraries: nothing in the image could satisfy them) and returns its architecture.
func inspectBinary(r io.ReaderAt) (arch string, err error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotELF, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%w: type %v", ErrNotELF, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%w: it has a program interpreter", ErrNotStatic)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", fmt.Errorf("%w: reading DT_NEEDED: %v", ErrNotELF, err)
	}
	if len(libs) > 0 {
		return "", fmt.Errorf("%w: it needs %v", ErrNotStatic, libs)
	}
	if f.Machine == elf.EM_PPC64 && f.Data == elf.ELFDATA2LSB {
		return "ppc64le", nil
	}
	arch, ok := ociArch[f.Machine]
	if !ok {
		return "", fmt.Errorf("%w: %v", ErrArch, f.Machine)
	}
	return arch, nil
}
