DROP TABLE IF EXISTS attrsync_shared.in_flight_slots;
