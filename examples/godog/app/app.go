// Package app is a small HTTP service for the godog example: users with a unique email,
// register and login, JWTs signed with a rotating secret kept in the database, and a
// process-wide cache whose keys must be prefixed per scenario.
package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// SchemaVersion names the migrations below; change it when they change.
const SchemaVersion = "godog-app-v1"

// Migrate is the app's own migration (what GORM AutoMigrate would do): tables and seed rows
// in the database the URL points at.
func Migrate(db *sql.DB) error {
	_, err := db.Exec(`
		create table users (
			id bigserial primary key,
			email text not null unique,
			password_hash text not null,
			created_at timestamptz not null default now()
		);
		create table jwt_secrets (
			version serial primary key,
			secret text not null,
			active boolean not null default true
		);
		create unique index jwt_secrets_one_active on jwt_secrets (active) where active;
		insert into jwt_secrets (secret) values ('seed-secret');`)
	return err
}

// Cache is a process-wide in-memory cache shared by every scenario of a test binary, like a
// real service's. Keys must carry the scenario's cache prefix, or scenarios see each other.
type Cache struct{ m sync.Map }

// SharedCache is the one cache of the process.
var SharedCache = &Cache{}

// Server is the service bound to one database (one schema) and one cache-key prefix.
type Server struct {
	DB  *sql.DB
	Key func(string) string // cache key in this instance's namespace
}

type cachedUser struct {
	ID   int64
	Hash string
}

func hashPassword(email, password string) string {
	h := sha256.Sum256([]byte(email + "\x00" + password))
	return hex.EncodeToString(h[:])
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", s.register)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /me", s.me)
	mux.HandleFunc("POST /secrets/rotate", s.rotate)
	mux.HandleFunc("GET /secrets/active", s.active)
	return mux
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) user(email string) (*cachedUser, error) {
	if v, ok := SharedCache.m.Load(s.Key("user:" + email)); ok {
		return v.(*cachedUser), nil
	}
	var u cachedUser
	err := s.DB.QueryRow("select id, password_hash from users where email = $1", email).Scan(&u.ID, &u.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	SharedCache.m.Store(s.Key("user:"+email), &u)
	return &u, nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || !strings.Contains(c.Email, "@") || c.Password == "" {
		reply(w, http.StatusBadRequest, map[string]string{"error": "email and password required"})
		return
	}
	if u, err := s.user(c.Email); err != nil {
		reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	} else if u != nil {
		reply(w, http.StatusConflict, map[string]string{"error": "email already registered"})
		return
	}
	var id int64
	err := s.DB.QueryRow("insert into users (email, password_hash) values ($1, $2) returning id",
		c.Email, hashPassword(c.Email, c.Password)).Scan(&id)
	if err != nil {
		reply(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	reply(w, http.StatusCreated, map[string]int64{"id": id})
}

func (s *Server) activeSecret() (int, string, error) {
	var v int
	var secret string
	err := s.DB.QueryRow("select version, secret from jwt_secrets where active").Scan(&v, &secret)
	return v, secret, err
}

func sign(secret, payload string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "bad request"})
		return
	}
	u, err := s.user(c.Email)
	if err != nil || u == nil || u.Hash != hashPassword(c.Email, c.Password) {
		reply(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
		return
	}
	_, secret, err := s.activeSecret()
	if err != nil {
		reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"sub": c.Email, "iat": time.Now().Unix()})
	unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(claims)
	reply(w, http.StatusOK, map[string]string{"token": unsigned + "." + sign(secret, unsigned)})
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(token, ".")
	_, secret, err := s.activeSecret()
	if err != nil || len(parts) != 3 || !hmac.Equal([]byte(sign(secret, parts[0]+"."+parts[1])), []byte(parts[2])) {
		reply(w, http.StatusUnauthorized, map[string]string{"error": "invalid token"})
		return
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(raw, &claims)
	reply(w, http.StatusOK, map[string]string{"email": claims.Sub})
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	tx, err := s.DB.Begin()
	if err == nil {
		if _, err = tx.Exec("update jwt_secrets set active = false where active"); err == nil {
			_, err = tx.Exec("insert into jwt_secrets (secret) values ($1)", hex.EncodeToString(buf))
		}
		if err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if err != nil {
		reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	s.active(w, r)
}

func (s *Server) active(w http.ResponseWriter, _ *http.Request) {
	v, _, err := s.activeSecret()
	if err != nil {
		reply(w, http.StatusInternalServerError, map[string]string{"error": fmt.Sprint(err)})
		return
	}
	reply(w, http.StatusOK, map[string]int{"version": v})
}
