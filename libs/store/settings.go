package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/db"
)

// Setting returns a named value; ok=false when it is not set.
func (s *Store) Setting(ctx context.Context, name string) ([]byte, bool, error) {
	v, err := s.q.SettingGet(ctx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, wrap(err, "setting "+name)
	}
	return v, true, nil
}

// SettingPutIfAbsent stores a value unless one is there; it reports
// whether it stored it.
func (s *Store) SettingPutIfAbsent(ctx context.Context, name string, value []byte) (bool, error) {
	n, err := s.q.SettingPutIfAbsent(ctx, db.SettingPutIfAbsentParams{Name: name, Value: value})
	return n == 1, wrap(err, "setting "+name)
}

// SettingPut stores a value.
func (s *Store) SettingPut(ctx context.Context, name string, value []byte) error {
	return wrap(s.q.SettingPut(ctx, db.SettingPutParams{Name: name, Value: value}), "setting "+name)
}
