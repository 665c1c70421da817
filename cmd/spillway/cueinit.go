package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"cuelang.org/go/cue"
	"cuelang.org/go/mod/modfile"
	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/blueprints"
)

// cueModulePath is the module path written for a policy directory that has
// no cue.mod of its own; it is what `cue mod init` writes by default.
const cueModulePath = "cue.example"

func cueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cue",
		Short: "Make the official cue tool work on a policy directory",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(cueInitCmd())
	return cmd
}

func cueInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write a cue.mod with the blueprints into DIR (default .)",
		Long: `Init writes a cue.mod into DIR so that the cue tool (cue vet -c ./...,
cue fmt, cue export) and editors resolve "spillway.dev/blueprints/..."
offline, without this binary:

  DIR/cue.mod/module.cue                     only if DIR has none yet
  DIR/cue.mod/pkg/spillway.dev/blueprints/   the schema and the blueprints
                                             this binary embeds, replaced

Run it again after upgrading spillway to refresh the blueprints. The engine
itself never reads cue.mod: it always uses the blueprints it was built with.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if err := cueInit(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; validate with: cue vet -c ./...\n", filepath.Join(dir, "cue.mod"))
			return nil
		},
	}
}

// cueInit writes dir/cue.mod: a module.cue unless one exists, and a copy of
// the embedded blueprint module under cue.mod/pkg, where the cue tool looks
// for imports that no dependency provides.
func cueInit(dir string) error {
	if info, err := os.Stat(dir); err != nil {
		return err
	} else if !info.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	modDir := filepath.Join(dir, "cue.mod")
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return err
	}
	moduleFile := filepath.Join(modDir, "module.cue")
	if _, err := os.Stat(moduleFile); errors.Is(err, fs.ErrNotExist) {
		src, err := modfile.Format(&modfile.File{
			Module:   cueModulePath,
			Language: &modfile.Language{Version: cue.LanguageVersion()},
		})
		if err != nil {
			return err
		}
		if err := os.WriteFile(moduleFile, src, 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	pkgDir := filepath.Join(modDir, "pkg", filepath.FromSlash(blueprints.ModulePath))
	if err := os.RemoveAll(pkgDir); err != nil {
		return err
	}
	return fs.WalkDir(blueprints.Module, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// The blueprints' own cue.mod would make the copy a nested module.
		if d.IsDir() && p == "cue.mod" {
			return fs.SkipDir
		}
		target := filepath.Join(pkgDir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if path.Ext(p) != ".cue" {
			return nil
		}
		src, err := fs.ReadFile(blueprints.Module, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, src, 0o644)
	})
}
