// Package sbom describes an image as an SPDX 2.3 document: its Debian
// packages from the lock and its daemon's Go modules from the binary's build
// info. The document is a pure function of its inputs, so two builds of the
// same image produce the same bytes.
package sbom

import (
	"bytes"
	"fmt"
	"regexp"
	"runtime/debug"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// MediaType is the SBOM's media type, as an artifact type and a layer type.
const MediaType = "application/spdx+json"

// Input is everything the document is made from.
type Input struct {
	// Name names the image ("pulse-sidecar").
	Name string
	// Image is the image's manifest digest; the document namespace derives
	// from it, so different images never share a namespace.
	Image v1.Hash
	// Created is SOURCE_DATE_EPOCH, never the wall clock.
	Created time.Time
	// Distro is the purl distro qualifier ("debian-12").
	Distro string
	// Packages are the .debs in the image, as the lock pins them.
	Packages []debian.LockedPackage
	// Copyright maps a package name to its /usr/share/doc/<name>/copyright.
	Copyright map[string][]byte
	// Daemon is the daemon binary's build info (buildinfo.ReadFile); nil
	// when the image has no Go binary to describe.
	Daemon *debug.BuildInfo
}

// Element IDs are stored without "SPDXRef-"; the JSON writer adds it.
const (
	documentID common.ElementID = "DOCUMENT"
	imageID    common.ElementID = "Image"
)

// Generate renders the SPDX 2.3 JSON document for in.
func Generate(in Input) ([]byte, error) {
	switch {
	case in.Name == "":
		return nil, fmt.Errorf("sbom: image name is empty")
	case in.Image.Hex == "":
		return nil, fmt.Errorf("sbom %s: image digest is empty", in.Name)
	case in.Created.IsZero():
		return nil, fmt.Errorf("sbom %s: creation time is zero; pass SOURCE_DATE_EPOCH", in.Name)
	case in.Distro == "":
		return nil, fmt.Errorf("sbom %s: distro is empty", in.Name)
	}
	doc := &v2_3.Document{
		SPDXVersion:       v2_3.Version,
		DataLicense:       v2_3.DataLicense,
		SPDXIdentifier:    documentID,
		DocumentName:      in.Name + "@" + in.Image.String(),
		DocumentNamespace: "urn:pulse-sidecar:sbom:" + idSafe(in.Name) + ":" + in.Image.String(),
		CreationInfo: &v2_3.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "imagectl"}},
			Created:  in.Created.UTC().Format(time.RFC3339),
		},
	}
	doc.Packages = append(doc.Packages, &v2_3.Package{
		PackageName:             in.Name,
		PackageSPDXIdentifier:   imageID,
		PackageVersion:          in.Image.String(),
		PackageDownloadLocation: noAssertion,
		PrimaryPackagePurpose:   "CONTAINER",
		PackageLicenseConcluded: noAssertion,
		PackageLicenseDeclared:  noAssertion,
		PackageCopyrightText:    noAssertion,
		PackageExternalReferences: []*v2_3.PackageExternalReference{
			purlRef(ociPURL(in.Name, in.Image.String())),
		},
	})
	rel := func(a common.ElementID, kind string, b common.ElementID) {
		doc.Relationships = append(doc.Relationships, &v2_3.Relationship{
			RefA:         common.MakeDocElementID("", string(a)),
			RefB:         common.MakeDocElementID("", string(b)),
			Relationship: kind,
		})
	}
	rel(documentID, common.TypeRelationshipDescribe, imageID)

	debs, refs, err := debPackages(in)
	if err != nil {
		return nil, err
	}
	for _, p := range debs {
		doc.Packages = append(doc.Packages, p)
		rel(imageID, common.TypeRelationshipContains, p.PackageSPDXIdentifier)
	}
	if in.Daemon != nil {
		mods := goPackages(in.Daemon)
		daemon := mods[0]
		doc.Packages = append(doc.Packages, mods...)
		rel(imageID, common.TypeRelationshipContains, daemon.PackageSPDXIdentifier)
		// A Go binary links its dependencies in, hence CONTAINS.
		for _, m := range mods[1:] {
			rel(daemon.PackageSPDXIdentifier, common.TypeRelationshipContains, m.PackageSPDXIdentifier)
		}
	}
	doc.OtherLicenses = otherLicenses(refs)

	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.Indent("  ")); err != nil {
		return nil, fmt.Errorf("sbom %s: %w", in.Name, err)
	}
	return buf.Bytes(), nil
}

func otherLicenses(refs map[string]string) []*v2_3.OtherLicense {
	ids := make([]string, 0, len(refs))
	for id := range refs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*v2_3.OtherLicense
	for _, id := range ids {
		out = append(out, &v2_3.OtherLicense{LicenseIdentifier: id, ExtractedText: refs[id]})
	}
	return out
}

func purlRef(purl string) *v2_3.PackageExternalReference {
	return &v2_3.PackageExternalReference{Category: "PACKAGE-MANAGER", RefType: "purl", Locator: purl}
}

var idUnsafeRE = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// idSafe maps a name onto the characters an SPDX identifier allows.
func idSafe(s string) string {
	return idUnsafeRE.ReplaceAllString(s, "-")
}
