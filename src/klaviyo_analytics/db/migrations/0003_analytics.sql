CREATE TABLE dim_time (
    date          date PRIMARY KEY,
    year          smallint NOT NULL,
    quarter       smallint NOT NULL,
    month         smallint NOT NULL,
    day           smallint NOT NULL,
    day_of_week   smallint NOT NULL,  -- ISO: 1 = Monday .. 7 = Sunday
    iso_week      smallint NOT NULL,
    iso_year      smallint NOT NULL,
    is_weekend    boolean NOT NULL,
    is_holiday    boolean NOT NULL DEFAULT false,
    holiday_name  text
);

-- Money is NUMERIC; refunds make negative values legal.
CREATE TABLE fact_revenue (
    date              date NOT NULL,
    channel           text NOT NULL,
    revenue           numeric NOT NULL DEFAULT 0,
    refunds           numeric NOT NULL DEFAULT 0,
    net_revenue       numeric NOT NULL DEFAULT 0,
    orders            integer NOT NULL DEFAULT 0,
    unique_customers  integer NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, channel)
);

CREATE TABLE fact_engagement (
    date          date NOT NULL,
    channel       text NOT NULL,
    metric_type   text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    unique_count  bigint NOT NULL DEFAULT 0,
    rate          numeric,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, channel, metric_type)
);

CREATE TABLE fact_conversions (
    date          date NOT NULL,
    source_type   text NOT NULL,
    source_id     text NOT NULL,
    message_id    text NOT NULL DEFAULT '',
    conversions   integer NOT NULL DEFAULT 0,
    revenue       numeric NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, source_type, source_id, message_id)
);
CREATE INDEX fact_conversions_source_idx ON fact_conversions (source_type, source_id, date);

CREATE TABLE forecast_models (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series_key    text NOT NULL,
    model_name    text NOT NULL,
    parameters    jsonb NOT NULL DEFAULT '{}'::jsonb,
    train_start   date NOT NULL,
    train_end     date NOT NULL,
    horizon_days  integer NOT NULL CHECK (horizon_days BETWEEN 1 AND 365),
    trained_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX forecast_models_series_idx ON forecast_models (series_key, trained_at DESC);

CREATE TABLE forecast_predictions (
    model_id    bigint NOT NULL REFERENCES forecast_models (id) ON DELETE CASCADE,
    date        date NOT NULL,
    predicted   numeric NOT NULL,
    lower_bound numeric NOT NULL,
    upper_bound numeric NOT NULL,
    level       numeric NOT NULL CHECK (level > 0 AND level < 1),
    PRIMARY KEY (model_id, date)
);

CREATE TABLE model_performance (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id       bigint REFERENCES forecast_models (id) ON DELETE CASCADE,
    series_key     text NOT NULL,
    model_name     text NOT NULL,
    folds          integer NOT NULL,
    mape           numeric,
    rmse           numeric,
    mae            numeric,
    coverage       numeric,
    evaluated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_performance_series_idx ON model_performance (series_key, evaluated_at DESC);
