// Package admin is the stand-in's test interface: a JSON API on its own loopback port, without
// authentication, through which tests change the state while the stand-in runs.
package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// Controller is what the admin interface needs beyond the state.
type Controller interface {
	StopListening()
	StartListening() error
	RotateHostCA(phase string) error
	Addresses() map[string]string
}

// Handler serves the admin API.
type Handler struct {
	state *state.State
	ctl   Controller
	mux   *http.ServeMux
}

// New makes the admin handler. Routes:
//
//	GET    /v1/info                          addresses, cluster name, suite, CA paths
//	POST   /v1/resources                     body: tctl-style YAML; creates or replaces
//	DELETE /v1/resources/{kind}/{name}       kind: role, bot, token, standin_kube_cluster
//	GET    /v1/resources                     names of every resource by kind
//	PUT    /v1/clusters/{name}/labels        body: {"labels": {...}, "dynamic_labels": {...}}
//	GET    /v1/bot-instances                 [{id, bot_name, generation, locked, ...}]
//	POST   /v1/bot-instances/{id}/lock       body (optional): {"message": "..."}
//	POST   /v1/bot-instances/{id}/unlock
//	POST   /v1/faults                        body: {"target", "kind", "message", "count"}
//	DELETE /v1/faults
//	POST   /v1/host-ca/rotate                body: {"phase": "start" | "complete"}
//	POST   /v1/listener/stop, /v1/listener/start
//	GET    /v1/log                           the request log; DELETE clears it
func New(st *state.State, ctl Controller) *Handler {
	h := &Handler{state: st, ctl: ctl, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/info", h.info)
	h.mux.HandleFunc("POST /v1/resources", h.createResources)
	h.mux.HandleFunc("GET /v1/resources", h.listResources)
	h.mux.HandleFunc("DELETE /v1/resources/{kind}/{name}", h.deleteResource)
	h.mux.HandleFunc("PUT /v1/clusters/{name}/labels", h.relabel)
	h.mux.HandleFunc("GET /v1/bot-instances", h.instances)
	h.mux.HandleFunc("POST /v1/bot-instances/{id}/lock", h.lock(true))
	h.mux.HandleFunc("POST /v1/bot-instances/{id}/unlock", h.lock(false))
	h.mux.HandleFunc("POST /v1/faults", h.addFault)
	h.mux.HandleFunc("DELETE /v1/faults", h.clearFaults)
	h.mux.HandleFunc("GET /v1/faults", h.listFaults)
	h.mux.HandleFunc("POST /v1/host-ca/rotate", h.rotate)
	h.mux.HandleFunc("POST /v1/listener/stop", h.stop)
	h.mux.HandleFunc("POST /v1/listener/start", h.start)
	h.mux.HandleFunc("GET /v1/log", h.log)
	h.mux.HandleFunc("DELETE /v1/log", h.clearLog)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(trail.HTTPStatus(err))
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if v == nil {
		v = map[string]string{"result": "ok"}
	}
	_ = json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return trail.BadParameterf("reading body: %v", err)
	}
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return trail.BadParameterf("body is not valid JSON: %v", err)
	}
	return nil
}

func (h *Handler) info(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{}
	for k, v := range h.ctl.Addresses() {
		out[k] = v
	}
	h.state.Read(func(d *state.Data) {
		out["cluster_name"] = d.ClusterName
		out["suite"] = d.Suite
		out["host_ca_count"] = len(d.HostCAs)
	})
	reply(w, out, nil)
}

func (h *Handler) createResources(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		reply(w, nil, trail.BadParameterf("reading body: %v", err))
		return
	}
	resources, err := state.ParseYAML(data)
	if err != nil {
		reply(w, nil, trail.BadParameterf("%v", err))
		return
	}
	_ = h.state.Write(func(d *state.Data) error { d.Apply(resources); return nil })
	var names []string
	for _, res := range resources {
		names = append(names, res.Kind())
	}
	reply(w, map[string]any{"created": len(resources), "kinds": names}, nil)
}

func (h *Handler) listResources(w http.ResponseWriter, _ *http.Request) {
	out := map[string][]string{}
	h.state.Read(func(d *state.Data) {
		for n := range d.Roles {
			out[state.KindRole] = append(out[state.KindRole], n)
		}
		for n := range d.Bots {
			out[state.KindBot] = append(out[state.KindBot], n)
		}
		for n := range d.Tokens {
			out[state.KindToken] = append(out[state.KindToken], n)
		}
		for n := range d.Clusters {
			out[state.KindKubeCluster] = append(out[state.KindKubeCluster], n)
		}
	})
	reply(w, out, nil)
}

func (h *Handler) deleteResource(w http.ResponseWriter, r *http.Request) {
	err := h.state.Write(func(d *state.Data) error { return d.Delete(r.PathValue("kind"), r.PathValue("name")) })
	reply(w, nil, err)
}

func (h *Handler) relabel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Labels        map[string]string             `json:"labels"`
		DynamicLabels map[string]state.DynamicLabel `json:"dynamic_labels"`
	}
	if err := decode(r, &body); err != nil {
		reply(w, nil, err)
		return
	}
	err := h.state.Write(func(d *state.Data) error {
		c, ok := d.Clusters[r.PathValue("name")]
		if !ok {
			return trail.NotFoundf("cluster %q is not found", r.PathValue("name"))
		}
		if body.Labels != nil {
			c.Labels = body.Labels
		}
		if body.DynamicLabels != nil {
			c.DynamicLabels = body.DynamicLabels
		}
		return nil
	})
	reply(w, nil, err)
}

func (h *Handler) instances(w http.ResponseWriter, _ *http.Request) {
	var out []state.BotInstance
	h.state.Read(func(d *state.Data) { out = d.InstanceList() })
	if out == nil {
		out = []state.BotInstance{}
	}
	reply(w, out, nil)
}

func (h *Handler) lock(locked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Message string `json:"message"`
		}
		if err := decode(r, &body); err != nil {
			reply(w, nil, err)
			return
		}
		err := h.state.Write(func(d *state.Data) error {
			inst, ok := d.Instances[r.PathValue("id")]
			if !ok {
				return trail.NotFoundf("bot instance %q is not found", r.PathValue("id"))
			}
			inst.Locked = locked
			inst.LockReason = body.Message
			if locked && inst.LockReason == "" {
				inst.LockReason = "locked by the test"
			}
			return nil
		})
		reply(w, nil, err)
	}
}

func (h *Handler) addFault(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Target  string `json:"target"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
		Count   int    `json:"count"`
	}
	if err := decode(r, &body); err != nil {
		reply(w, nil, err)
		return
	}
	kind, err := trail.ParseKind(body.Kind)
	if err != nil || body.Target == "" {
		reply(w, nil, trail.BadParameterf("a fault needs a target (gRPC full method, web path or \"kube\") and a known kind: %v", err))
		return
	}
	if body.Count <= 0 {
		body.Count = 1
	}
	if body.Message == "" {
		body.Message = "injected failure: " + kind.String()
	}
	_ = h.state.Write(func(d *state.Data) error {
		d.Faults = append(d.Faults, &state.Fault{Target: body.Target, Kind: kind, KindName: kind.String(), Message: body.Message, Remaining: body.Count})
		return nil
	})
	reply(w, nil, nil)
}

func (h *Handler) clearFaults(w http.ResponseWriter, _ *http.Request) {
	_ = h.state.Write(func(d *state.Data) error { d.Faults = nil; return nil })
	reply(w, nil, nil)
}

func (h *Handler) listFaults(w http.ResponseWriter, _ *http.Request) {
	out := []state.Fault{}
	h.state.Read(func(d *state.Data) {
		for _, f := range d.Faults {
			out = append(out, *f)
		}
	})
	reply(w, out, nil)
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Phase string `json:"phase"`
	}
	if err := decode(r, &body); err != nil {
		reply(w, nil, err)
		return
	}
	reply(w, nil, h.ctl.RotateHostCA(body.Phase))
}

func (h *Handler) stop(w http.ResponseWriter, _ *http.Request) {
	h.ctl.StopListening()
	reply(w, nil, nil)
}

func (h *Handler) start(w http.ResponseWriter, _ *http.Request) {
	err := h.ctl.StartListening()
	if err != nil {
		err = trail.Errorf(trail.ConnectionProblem, "%v", err)
	}
	reply(w, nil, err)
}

func (h *Handler) log(w http.ResponseWriter, r *http.Request) {
	var out []state.LogEntry
	h.state.Read(func(d *state.Data) { out = append([]state.LogEntry{}, d.Log...) })
	if n, err := strconv.Atoi(r.URL.Query().Get("tail")); err == nil && n >= 0 && n < len(out) {
		out = out[len(out)-n:]
	}
	reply(w, out, nil)
}

func (h *Handler) clearLog(w http.ResponseWriter, _ *http.Request) {
	_ = h.state.Write(func(d *state.Data) error { d.Log = nil; return nil })
	reply(w, nil, nil)
}
