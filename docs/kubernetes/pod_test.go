// Package kubernetes holds the example pod spec; its test is the check an
// admission controller would apply, run without a cluster.
package kubernetes

import (
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

func loadPod(t *testing.T) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile("pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The API server's own decoder, strict: an unknown, duplicated or
	// miscased field (readOnlyRootFileSystem) fails here instead of being
	// dropped (encoding/json would match it case-insensitively).
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	obj, _, err := dec.Decode(b, nil, nil)
	if err != nil {
		t.Fatalf("pod.yaml: %v", err)
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		t.Fatalf("pod.yaml holds a %T, want a Pod", obj)
	}
	return pod
}

func TestPodIsRestricted(t *testing.T) {
	pod := loadPod(t)
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	for _, r := range eval.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			t.Errorf("restricted: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
}

// The sidecar's container carries what README promises: the cookie as a
// mounted file, the JWT key as a mounted secret with the claim binding, a
// read-only root and the live readiness probe.
func TestSoundContainer(t *testing.T) {
	pod := loadPod(t)
	var sound *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "sound" {
			sound = &pod.Spec.Containers[i]
		}
	}
	if sound == nil {
		t.Fatal("no container named sound")
	}
	env := map[string]string{}
	for _, e := range sound.Env {
		env[e.Name] = e.Value
		if e.Name == "PULSEAUDIO_COOKIE" {
			t.Error("the sidecar gets the cookie in its environment; use --cookie-file")
		}
	}
	mounted := func(path string) string {
		for _, m := range sound.VolumeMounts {
			if strings.HasPrefix(path, m.MountPath+"/") {
				for _, v := range pod.Spec.Volumes {
					if v.Name == m.Name && v.Secret != nil && m.ReadOnly {
						return v.Secret.SecretName
					}
				}
			}
		}
		return ""
	}
	for _, f := range []string{"PULSE_SIDECAR_COOKIE_FILE", "PULSE_SIDECAR_AUTH_JWT_KEY"} {
		if env[f] == "" || mounted(env[f]) == "" {
			t.Errorf("%s=%q is not a file in a read-only Secret volume", f, env[f])
		}
	}
	if !strings.Contains(env["PULSE_SIDECAR_AUTH_REQUIRE_CLAIM"], "=$(") {
		t.Errorf("PULSE_SIDECAR_AUTH_REQUIRE_CLAIM=%q does not bind a claim to the pod's environment", env["PULSE_SIDECAR_AUTH_REQUIRE_CLAIM"])
	}
	sc := sound.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root file system not read-only")
	}
	if p := sound.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Error("no /readyz readiness probe")
	}
}
